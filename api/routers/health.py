from fastapi import APIRouter

from api.dependencies import ServicesDep
from api.problems import problem_responses
from api.schemas import Health
from domain.error import ServiceUnavailableError

router = APIRouter(tags=['operations'])


@router.get(
    '/healthz',
    summary='Liveness: 200 while the process serves',
    response_description='The process serves',
    description='Touches nothing but the process; no caller id or gateway token needed.',
    responses=problem_responses(500),
)
async def healthz() -> Health:
    return Health(status='ok')


@router.get(
    '/readyz',
    summary='Readiness: metadata store answers and the data directory is writable',
    response_description='Ready to serve',
    description='`503 service_unavailable` (with `Retry-After`) while either is away; no '
    'caller id or gateway token needed.',
    responses=problem_responses(500, 503),
)
async def readyz(services: ServicesDep) -> Health:
    if not await services.backend.health_check() or not await services.blobs.is_writable():
        raise ServiceUnavailableError
    return Health(status='ready')
