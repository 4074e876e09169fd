"""Use cases of chat-storage: one operation a module, ports in `usecase.interface`."""
