"""The HTTP layer: FastAPI routers, request/response models, problem details, wiring."""
