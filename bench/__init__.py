"""`make bench`: the service against nginx and its own framework ceiling (`python -m bench`)."""
