"""Take the README's screenshot of the run viewer from a real run: `python -m docs.screenshots` starts a
local Ray instance, the OpenAI-compatible test server and a gateway in the embedded development mode (in
a temporary directory), signs in through the page, runs the demo workflow (a conditional, a map of 20 LLM
calls, a streamed digest) from its Run form in Debian's headless Chromium, and writes
docs/run-viewer.png once the job has completed, with the map node's details open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import uuid
from pathlib import Path

from actors.ray_runtime import ray_api
from config.settings import Settings
from tests.support.browser import VIEWPORT, chromium
from tests.support.demo_workflow import documents, review_workflow
from tests.support.live_gateway import serve_gateway
from tests.support.openai_server import OpenAITestServer

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "docs" / "run-viewer.png"
JOB_SLOTS = 8
DOCUMENTS = 20
LLM_LATENCY_S = 0.3
TIMEOUT_MS = 60_000


async def take(target: Path, data_dir: Path) -> None:
    with OpenAITestServer(latency_s=LLM_LATENCY_S, chunk_delay_s=0.05) as model:
        settings = Settings(
            _env_file=None,
            HOST="127.0.0.1",
            DATA_DIR=data_dir,
            RAY_DASHBOARD=False,
            RAY_NAMESPACE=f"screenshots-{uuid.uuid4().hex[:8]}",
            JOB_ACTOR_MODE="reuse",
            WARM_POOL_SIZE=1,
            EXECUTOR_POOL_SIZE=1,
            LOG_LEVEL="WARNING",
            MODEL_SERVICE_URL=model.url,
        )
        async with serve_gateway(settings) as (base_url, _app), chromium() as browser:
            page = await browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(TIMEOUT_MS)
            await page.goto(f"{base_url}/ui/#/signin")
            await page.fill("#dev-name", "alice")
            await page.click("#dev-submit")
            await page.click("#new-workflow")
            await page.fill("#definition", json.dumps(review_workflow()))
            await page.click("#create-workflow")
            await page.fill("#run-input", json.dumps(documents(DOCUMENTS)))
            await page.click("#run")
            await page.wait_for_selector("g.dag-node[data-node-id='end'][data-status='completed']")
            await page.click("g.dag-node[data-node-id='summarise']")
            await page.wait_for_selector("#node-log li:has-text('completed')")
            await page.screenshot(path=target, full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=SCREENSHOT, help="where to write the PNG")
    args = parser.parse_args()
    ray_api.init(None, "screenshots", job_slots=JOB_SLOTS, include_dashboard=False)
    try:
        with tempfile.TemporaryDirectory(prefix="screenshots-") as data_dir:
            asyncio.run(take(args.output, Path(data_dir)))
    finally:
        ray_api.shutdown()
    print(args.output)


if __name__ == "__main__":
    main()
