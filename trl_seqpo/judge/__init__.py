"""The LLM judge as a service: an OpenAI-compatible client with retries and a cache, and its prompts."""
