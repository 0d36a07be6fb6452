"""chatgate: a chatbot-first messenger gateway."""
