"""Pass a writer ref to a function: the function streams bytes and messages back with the
fire-and-forget send_message()/close(); the caller reads while the call runs. The channel is
made with the blocking create_channel helper."""

import asyncio
import os
import sys
import time

# --- iii imports ---
from iii import InitOptions, register_worker
from iii.channel import ChannelWriter
from iii.helpers import create_channel
# --- end iii imports ---

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="compat-channel-back"))


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = iii.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


async def generate(input: dict) -> dict:
    writer = input["writer"]
    for i in range(input["count"]):
        await writer.write(f"line {i}\n".encode())
    writer.send_message("generated")
    writer.close()
    return {"ok": True, "is writer": isinstance(writer, ChannelWriter), "tag": input["tag"]}


async def main(channel) -> None:
    messages: list[str] = []
    channel.reader.on_message(messages.append)
    pending = asyncio.create_task(
        iii.trigger_async(
            {
                "function_id": "files::generate",
                "payload": {"writer": channel.writer_ref, "count": 500, "tag": ["nested", {"x": 1}]},
            }
        )
    )
    chunks = []
    async for chunk in channel.reader:
        chunks.append(chunk)
    result = await pending
    data = b"".join(chunks)
    print("result:", result)
    print("lines:", data.count(b"\n"), "first:", data[:7], "last:", data[-9:])
    print("messages:", messages)


try:
    iii.register_function("files::generate", generate)
    wait_for_function("files::generate")
    channel = create_channel(iii)
    print("writer ref:", type(channel.writer_ref).__name__, channel.writer_ref.direction)
    asyncio.run(main(channel))
finally:
    iii.shutdown()
