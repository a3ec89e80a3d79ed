"""Chat transports (Telegram, Discord): adapters between a chat service and the chat-ops core, no business logic."""
