import asyncjobs
from asyncjobs.examples import count_words


async def test_enqueue_run_result(client, start_worker):
    await start_worker([count_words])
    handle = await client.enqueue(count_words, "a b c")
    assert await handle.result(timeout=10) == 3
    assert await handle.status() is asyncjobs.JobStatus.COMPLETE
