"""Every outbound HTTP request: one keep-alive pool, the address guard at connect time, requests prepared once.

stream.py      asyncio connections that send a request in one write
pool.py        KeepAlivePool: the one pool (per purpose), over a plain or a guarded backend
connection.py  HTTP/1.1 on one keep-alive connection, answers parsed by httptools
guard.py       the address guard (SSRF): URL checks, and addresses checked when a connection opens
request.py     a call_webhook config rendered into the request to send; masking
retry.py       whether and when a failed attempt is tried again
client.py      WebhookClient: one webhook attempt, redirects re-checked, body capped
transport.py   httpx on the pool, for code that speaks httpx (the OpenAI SDK, channel checks)
"""
