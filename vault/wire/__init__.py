"""The HTTP API as data: the JSON bodies (``schemas``) and the operations (``operations``).

Both the server and the client may import this package (it sits below them, with the rest of
``vault/``); ``server/openapi.py`` generates the OpenAPI document from it.
"""
