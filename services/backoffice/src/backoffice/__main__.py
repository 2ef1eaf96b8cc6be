"""`python -m backoffice`: serve the back office with uvicorn on BACKOFFICE_HOST:BACKOFFICE_PORT."""

import uvicorn

from backoffice.app import create_app
from backoffice.config import Settings

settings = Settings()
uvicorn.run(
    create_app(settings),
    host=settings.host,
    port=settings.port,
    log_config=None,
    access_log=False,
    timeout_graceful_shutdown=10,
    loop="uvloop",
    http="httptools",
    lifespan="on",
    # the gateway's address is the only upstream; proxies in front set X-Forwarded-*
    proxy_headers=False,
)
