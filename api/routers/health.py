from fastapi import APIRouter

from api.dependencies import ServicesDep
from api.problems import problem_responses
from api.schemas import Health
from domain.error import ServiceUnavailableError

router = APIRouter(tags=['operations'])


@router.get('/healthz', summary='Liveness: 200 while the process serves')
async def healthz() -> Health:
    return Health(status='ok')


@router.get(
    '/readyz',
    summary='Readiness: metadata store answers and the data directory is writable',
    responses=problem_responses(503),
)
async def readyz(services: ServicesDep) -> Health:
    if not await services.backend.health_check() or not await services.storage.is_writable():
        raise ServiceUnavailableError
    return Health(status='ready')
