"""Run under torchrun by tests/test_distributed.py: train, then save this rank's parameters beside the run.

Usage: python -m torch.distributed.run ... tests/ddp_worker.py OUT PARAMS_DIR key=value ...
"""
import os
import sys

from safetensors.torch import save_file

import vaekit

out, params_dir, *sets = sys.argv[1:]
run = vaekit.fit(vaekit.Config(out=out).override(sets))
save_file({k: v.contiguous() for k, v in run.model.state_dict().items()}, f"{params_dir}/rank{os.environ['RANK']}.safetensors")
