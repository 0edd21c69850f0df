"""Pass a reader ref to another worker's function: the caller writes, the function reads (the
ref arrives as a live ChannelReader)."""

import asyncio
import hashlib
import os
import sys
import time

# --- iii imports ---
from iii import InitOptions, register_worker
from iii.channel import ChannelReader
from iii.helpers import create_channel_async
# --- end iii imports ---

url = os.environ["III_URL"]
processor = register_worker(url, InitOptions(worker_name="compat-files-processor"))
client = register_worker(url, InitOptions(worker_name="compat-files-client"))


def wait_for_function(function_id: str) -> None:
    for _ in range(1000):
        listed = client.trigger({"function_id": "engine::functions::list", "payload": {}})
        if any(f["function_id"] == function_id for f in listed["functions"]):
            return
        time.sleep(0.01)
    sys.exit(f"{function_id} never showed up")


async def process_file(input: dict) -> dict:
    reader = input["reader"]
    notes: list[str] = []
    reader.on_message(notes.append)
    digest = hashlib.sha256()
    total = 0
    chunks = 0
    async for chunk in reader:
        digest.update(chunk)
        total += len(chunk)
        chunks += 1
    return {
        "filename": input["filename"],
        "is reader": isinstance(reader, ChannelReader),
        "bytes": total,
        "sha256": digest.hexdigest()[:16],
        "notes": notes,
        "got chunks": chunks > 0,
    }


async def main() -> None:
    channel = await create_channel_async(client)
    pending = asyncio.create_task(
        client.trigger_async(
            {
                "function_id": "files::process",
                "payload": {"filename": "report.csv", "reader": channel.reader_ref.model_dump()},
            }
        )
    )
    await channel.writer.send_message_async("header")
    for row in range(2000):
        await channel.writer.write(f"{row},{row * row}\n".encode())
    await channel.writer.send_message_async("footer")
    await channel.writer.close_async()
    result = await pending
    for key in sorted(result):
        print(f"{key}: {result[key]}")


try:
    processor.register_function("files::process", process_file)
    wait_for_function("files::process")
    asyncio.run(main())
finally:
    client.shutdown()
    processor.shutdown()
