"""Drives Switchboard's /mcp endpoint with the official MCP client (`mcp` on PyPI), 1.x
(`streamablehttp_client` + `ClientSession`) or 2.x (`Client`).

Usage: python mcp_client.py URL TOKEN SCENARIO
  SCENARIO `full`: list the tools, call `echo`, call `approval` (it waits for a person),
  list the waiting runs, answer it. `readonly`: list the tools and try to call `echo`.
Prints one JSON object with what each call returned; tests/mcp_server.rs asserts on it.
"""

import asyncio
import json
import sys

url, token, scenario = sys.argv[1], sys.argv[2], sys.argv[3]
headers = {"Authorization": f"Bearer {token}"}


def result(r):
    structured = getattr(r, "structured_content", None)
    if structured is None:
        structured = getattr(r, "structuredContent", None)
    is_error = getattr(r, "is_error", None)
    if is_error is None:
        is_error = getattr(r, "isError", None)
    texts = [c.text for c in r.content if getattr(c, "type", "") == "text"]
    return {"text": "\n".join(texts), "structured": structured, "is_error": bool(is_error)}


async def run(session):
    out = {}
    tools = await session.list_tools()
    out["tools"] = sorted(t.name for t in tools.tools)
    out["schemas"] = {t.name: (getattr(t, "input_schema", None) or getattr(t, "inputSchema", None)) for t in tools.tools}
    out["echo"] = result(await session.call_tool("echo", {"text": "hello from mcp"}))
    if scenario == "readonly":
        return out
    out["approval"] = result(await session.call_tool("approval", {"text": "ship it"}))
    out["waiting"] = result(await session.call_tool("list_waiting", {}))
    run_id = out["approval"]["structured"]["run_id"]
    out["answer"] = result(await session.call_tool("answer", {"run_id": run_id, "response": "approve"}))
    out["bad"] = result(await session.call_tool("typed", {"n": "not a number"}))
    return out


async def main():
    try:
        from mcp.client.streamable_http import streamablehttp_client  # mcp 1.x
        from mcp import ClientSession

        async with streamablehttp_client(url, headers=headers) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await run(session)
    except ImportError:
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers=headers, timeout=60)
        async with Client(streamable_http_client(url, http_client=http)) as client:
            return await run(client)


print(json.dumps(asyncio.run(main())))
