"""One isolated memory measurement: `python -m robustfront.bench SPEC_JSON` prints its peak memory as JSON."""
import json
import sys

from .runner import peak_memory

print(json.dumps(peak_memory(json.loads(sys.argv[1]))))
