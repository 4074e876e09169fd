"""Use cases of chat-storage: one operation a module, ports in `usecase.interface` (metadata,
time, ids, tracing) and `usecase.store_ports` (blobs, chat directories)."""
