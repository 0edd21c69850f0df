"""A channel used locally: binary chunks (over the 64 KiB frame size) and text messages, in order,
with create_channel_async from iii.helpers."""

import asyncio
import hashlib
import os

# --- iii imports ---
from iii import InitOptions, register_worker
from iii.helpers import create_channel_async
# --- end iii imports ---

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-channel-local"))

BIG = bytes(range(256)) * 1000  # 256,000 bytes: split into several frames


async def main() -> None:
    channel = await create_channel_async(iii, buffer_size=16)
    print("refs:", channel.writer_ref.direction, channel.reader_ref.direction)
    print("same channel:", channel.writer_ref.channel_id == channel.reader_ref.channel_id)
    print("ref dump keys:", sorted(channel.reader_ref.model_dump()))

    messages: list[str] = []
    channel.reader.on_message(messages.append)

    async def produce() -> None:
        await channel.writer.send_message_async("progress 0%")
        for i in range(3):
            await channel.writer.write(f"part-{i};".encode())
        await channel.writer.write(BIG)
        await channel.writer.send_message_async("progress 100%")
        await channel.writer.close_async()

    producer = asyncio.create_task(produce())
    data = await channel.reader.read_all()
    await producer
    print("bytes:", len(data), hashlib.sha256(data).hexdigest()[:16])
    print("head:", data[:21])
    print("messages:", messages)


try:
    asyncio.run(main())
finally:
    iii.shutdown()
