"""The emulator through HubSpot's official Node SDK (`@hubspot/api-client`): the tests in
node_sdk/sdk.test.mjs, run with Node's test runner against the real emulator binary."""

import os
import pathlib
import subprocess

import pytest

TOKEN = "pat-na1-node-sdk"
NODE_SDK_DIR = pathlib.Path(__file__).resolve().parent / "node_sdk"


@pytest.fixture
def emulator(start_emulator):
    return start_emulator("--seed", "3", "--token", TOKEN)


def test_node_sdk_gets_hubspots_answers(emulator):
    assert (NODE_SDK_DIR / "node_modules" / "@hubspot" / "api-client").is_dir(), "run `make test` to install it"
    env = dict(os.environ, EMULATOR_URL=emulator.base_url, TOKEN=TOKEN)
    run = subprocess.run(
        ["node", "--test", "sdk.test.mjs"],
        cwd=NODE_SDK_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # Every test ran: none skipped or left out.
    assert "# pass 4" in run.stdout and "# fail 0" in run.stdout, run.stdout
