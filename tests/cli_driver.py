"""Runs many command lines through train.py or eval.py, cheaply and as the shell would.

    python tests/cli_driver.py ROOT train|eval '[["--config", ...], ...]'  ->  JSON on stdout:
    [{"argv": [...], "code": exit code, "stderr": text}, ...]

Each command line runs in a process forked from one that has imported the script but run no JAX
computation, so a case costs milliseconds rather than an interpreter start, yet gets fresh flags,
the script's own parsing and `main`, its real exit code and everything it writes to stderr.
"""
import importlib
import json
import os
import sys
import traceback

root, script, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, root)
os.chdir(root)
from absl import app  # noqa: E402

from genmodels import cli  # noqa: E402

module = importlib.import_module(script)
results = []
for argv in cases:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.dup2(write_end, 2)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        sys.argv = [f'{script}.py', *argv]
        code = 0
        try:
            app.run(module.main, flags_parser=cli.parse_flags)
        except SystemExit as e:
            code = e.code
            if isinstance(code, str):
                print(code, file=sys.stderr)
                code = 1
            code = code or 0
        except BaseException:  # noqa: BLE001 - what escapes main is what the test looks for
            traceback.print_exc()
            code = 99
        sys.stderr.flush()
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        stderr = f.read()
    _, status = os.waitpid(pid, 0)
    results.append({'argv': argv, 'code': os.waitstatus_to_exitcode(status), 'stderr': stderr})
print(json.dumps(results))
