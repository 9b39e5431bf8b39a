"""The official Python SDK (PyPI `mcp` 2.3) through the gateway, in both protocol eras,
against echo-mcp and a real third-party server (PyPI `mcp-server-time`)."""

import json

import httpx2
import mcp_types as types
import pytest
from mcp import Client, ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

HANDSHAKE_VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]


def http(token: str | None) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=60.0))


async def initialize_at(session: ClientSession, version: str) -> types.InitializeResult:
    """Initialize offering one specific version (ClientSession.initialize() offers only the latest)."""
    result = await session.send_request(
        types.InitializeRequest(
            params=types.InitializeRequestParams(
                protocol_version=version,
                capabilities=types.ClientCapabilities(),
                client_info=types.Implementation(name="gig-e2e", version="0"),
            )
        ),
        types.InitializeResult,
    )
    session.adopt(result)
    await session.send_notification(types.InitializedNotification())
    return result


def text_of(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def exercise(session) -> None:
    tools = {t.name for t in (await session.list_tools()).tools}
    assert {"echo_echo", "time_get_current_time", "time_convert_time"} <= tools, tools

    echoed = await session.call_tool("echo_echo", {"message": "hello gateway"})
    assert not echoed.is_error
    assert text_of(echoed) == "hello gateway"

    now = await session.call_tool("time_get_current_time", {"timezone": "UTC"})
    assert not now.is_error, text_of(now)
    payload = json.loads(text_of(now))
    assert payload["timezone"] == "UTC" and "datetime" in payload

    prompts = {p.name for p in (await session.list_prompts()).prompts}
    assert "echo_repeat" in prompts
    resources = [r.uri for r in (await session.list_resources()).resources]
    assert "gig://echo/echo://readme" in [str(u) for u in resources]


@pytest.mark.anyio
@pytest.mark.parametrize("version", HANDSHAKE_VERSIONS)
async def test_initialize_era(gateway, version):
    async with http(gateway.token) as client:
        async with streamable_http_client(gateway.url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                result = await initialize_at(session, version)
                assert result.protocol_version == version
                assert result.server_info.name == "gigmcp"
                await exercise(session)


@pytest.mark.anyio
async def test_stateless_2026_era_with_discover(gateway):
    async with http(gateway.token) as client:
        async with streamable_http_client(gateway.url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.discover()
                assert session.protocol_version == "2026-07-28"
                await exercise(session)


@pytest.mark.anyio
async def test_high_level_client_auto_mode_negotiates_2026(gateway):
    async with http(gateway.token) as client:
        transport = streamable_http_client(gateway.url, http_client=client)
        async with Client(transport, mode="auto") as c:
            assert c.protocol_version == "2026-07-28"
            result = await c.call_tool("echo_echo", {"message": "auto"})
            assert text_of(result) == "auto"


@pytest.mark.anyio
@pytest.mark.parametrize("token", [None, "wrong-token-0123456789"])
async def test_missing_or_wrong_token_is_refused(gateway, token):
    async with http(token) as client:
        with pytest.raises(BaseException) as info:
            async with streamable_http_client(gateway.url, http_client=client) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
        assert "401" in repr(info.value) or isinstance(info.value, (MCPError, BaseExceptionGroup))
    # And nothing reached a backend: the gateway logged no session for it.
    assert "create new session" not in gateway.logs()
