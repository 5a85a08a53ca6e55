"""A loopback OpenAI-compatible chat server with fixed answers, for checking ``swift eval`` offline.

``POST /v1/chat/completions`` answers from a table keyed by :func:`request_key`: the SHA-1 of the
request's first image (the bytes a ``data:`` URI carries, i.e. the image file's bytes) and the
text of its last user message, stripped. Unknown requests get ``default``. ``GET /v1/models``
lists one model. Every request is recorded in ``requests``. The server binds ``127.0.0.1`` on a
free port and serves from a daemon thread; leaving the ``with`` block stops it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple


def image_digest(data: bytes) -> str:
    """SHA-1 hex digest of image bytes (a file's content)."""
    return hashlib.sha1(data).hexdigest()


def request_key(messages: List[dict]) -> Tuple[Optional[str], str]:
    """``(image digest or None, last user text)`` of OpenAI chat ``messages``."""
    digest, text = None, ''
    for message in messages:
        content = message.get('content')
        parts = [{'type': 'text', 'text': content}] if isinstance(content, str) else (content or [])
        texts = []
        for part in parts:
            if part.get('type') == 'image_url' and digest is None:
                url = part['image_url']['url']
                digest = image_digest(base64.b64decode(url.split(',', 1)[1])) if url.startswith('data:') else url
            elif part.get('type') == 'text':
                texts.append(part.get('text') or '')
        if message.get('role') == 'user':
            text = ''.join(texts).strip()
    return digest, text


class OpenAIStub:
    """Fixed-answer server; use as ``with OpenAIStub(answers) as stub: stub.base_url``.

    Args:
        answers: ``{request_key: response text}``.
        default: answer for any other request.
        model: the model name listed and echoed.
    """

    def __init__(self, answers: Dict[Tuple[Optional[str], str], str], default: str = '', model: str = 'stub-model'):
        self.answers, self.default, self.model = dict(answers), default, model
        self.requests: List[dict] = []
        self._server: Optional[ThreadingHTTPServer] = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f'http://127.0.0.1:{self._server.server_address[1]}/v1'

    def __enter__(self) -> 'OpenAIStub':
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 (http.server's name)
                self._send({'object': 'list', 'data': [{'id': stub.model, 'object': 'model', 'owned_by': 'stub'}]})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get('Content-Length') or 0)) or b'{}')
                stub.requests.append(body)
                text = stub.answers.get(request_key(body.get('messages') or []), stub.default)
                self._send({'id': f'stub-{len(stub.requests)}', 'object': 'chat.completion', 'created': int(time.time()),
                            'model': stub.model,
                            'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': text},
                                         'finish_reason': 'stop'}],
                            'usage': {'prompt_tokens': 1, 'completion_tokens': 1, 'total_tokens': 2}})

            def log_message(self, *args):  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
