"""`AMIClient.event_batches()`: the same events as `events()`, in lists, against the fake server."""

from __future__ import annotations

import asyncio

import pytest
from test_ami_client import FakeAMI, aio, logged_in, serve_login, wire

from cti_cli.ami.errors import ConnectionLost

pytestmark = pytest.mark.timeout(30)


@aio
async def test_batches_hold_every_event_in_order_without_replies() -> None:
    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        for i in range(300):
            writer.write(wire({"Event": "VarSet", "Value": f"Иван {i}"}))
            if i == 150:  # an unsolicited reply is not an event
                writer.write(wire({"Response": "Success", "ActionID": "stale"}))
            if i % 50 == 0:
                await writer.drain()
                await asyncio.sleep(0.01)  # several reads, so several batches
        await writer.drain()

    async with FakeAMI(stream) as server:
        client = await logged_in(server.port)
        values: list[str] = []
        sizes: list[int] = []
        with pytest.raises(ConnectionLost, match="closed"):
            async for batch in client.event_batches():
                sizes.append(len(batch))
                values.extend(event["Value"] for event in batch)
        assert values == [f"Иван {i}" for i in range(300)]
        assert all(sizes) and len(sizes) > 1
        await client.close()


@aio
async def test_leaving_batches_early_lets_queued_events_be_dropped_again() -> None:
    async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_login(reader, writer)
        writer.write(wire({"Event": "First"}))
        await writer.drain()
        await asyncio.sleep(0.2)
        for i in range(20):
            writer.write(wire({"Event": "Later", "N": str(i)}))
        await asyncio.sleep(10)

    async with FakeAMI(stream) as server:
        client = await logged_in(server.port, max_queued_events=5)
        async for event in client.events():
            assert event.name == "First"
            break  # events() closes its batches at once: nobody consumes any more
        await asyncio.sleep(0.5)
        assert client.dropped_events >= 15
        await client.close()
