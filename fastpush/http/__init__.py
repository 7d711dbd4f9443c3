"""The HTTP surface: nginx push-stream compatible publisher, subscriber and
statistics locations over an asyncio protocol fed by httptools."""
