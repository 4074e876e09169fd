"""Domain entities and errors of chat-storage; imports nothing of ours."""
