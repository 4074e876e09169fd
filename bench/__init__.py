"""`make bench`: the service against nginx and its own framework ceiling (`python -m bench`)."""

# the bare route; here, not in `bench.servers`, because the measured server imports it: the
# server's memory must not include the bench's own client libraries (httpx, asyncpg)
BARE_PATH = '/bench/bare'
