"""A writer's close() that the engine does not confirm in time says the data may still arrive
(docs/channels.md, "Reader loss")."""

from __future__ import annotations

import pytest
from channel_helpers import unique

import iii_rx
from iii_rx.channels import ChannelCloseUnconfirmedError
from iii_rx.engine import Engine


async def test_a_close_the_engine_does_not_confirm_in_time_says_the_data_may_arrive() -> None:
    # The reader starts reading only after close(): the close frame waits behind data the
    # engine has no room for yet. That is no loss: the reader then gets it all.
    async with Engine(port=0, channel_buffer_bytes=65536) as engine, \
            iii_rx.connect(engine.url, name=unique("unconfirmed")) as client:
        channel = await client.create_channel_async(buffer_size=1)
        writer = channel.writer
        data = b"d" * (1024 * 1024)
        await writer.write(data)
        assert writer._ws is not None
        writer._ws.close_timeout = 0.5  # the closing handshake's 10 s, shortened for the test
        with pytest.raises(ChannelCloseUnconfirmedError, match="may still be delivered"):
            await writer.close()
        assert await channel.reader.read_all() == data
