"""The one client for OpenAI-compatible chat endpoints (``swift deploy``, vLLM, a hosted GPT-4o).

Used by the engine's MLLM describer and by the LLM consistency judge. The ``openai`` package is
imported only when a client is made.
"""
from __future__ import annotations

import os
from typing import List, Optional


def make_client(base_url: Optional[str], api_key: Optional[str] = None, *, timeout: float = 60.0,
                max_retries: int = 2):
    """An ``openai.OpenAI`` client.

    Args:
        base_url: endpoint, e.g. ``'http://127.0.0.1:8000/v1'`` (``None``: the package default).
        api_key: key; default ``$OPENAI_API_KEY``, else ``'EMPTY'`` (local servers accept any key).
        timeout: seconds per request; max_retries: client retries per request
            (worst case ``timeout * (max_retries + 1)`` seconds per call).
    """
    from openai import OpenAI
    return OpenAI(base_url=base_url, api_key=api_key or os.environ.get('OPENAI_API_KEY') or 'EMPTY',
                  timeout=timeout, max_retries=max_retries)


def chat_text(client, model: str, messages: List[dict], *, temperature: float = 0.0) -> str:
    """Text of the first choice of one chat completion (``''`` when the reply has no content).

    Raises:
        Whatever the client raises (network errors, timeouts, HTTP status errors).
    """
    reply = client.chat.completions.create(model=model, messages=messages, temperature=temperature)
    return reply.choices[0].message.content or ''
