"""Checkpoint files: written atomically, read back with torch.load(weights_only=True)."""
import errno
import os
from pathlib import Path

import torch

from configs import UserError

FORMAT = "bom_vae_v15/1"


def previous_path(path):
    """Where the checkpoint before `path`'s current one is kept: checkpoint.prev.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(payload, path):
    """Write to a temporary file, flush it to disk, then rename over the old one: a crash or a
    full disk mid-write never replaces the previous good checkpoint with a broken one. The old
    one is first renamed to checkpoint.prev.pt, so that a checkpoint damaged after it was
    written (a disk, a copy to Drive, a full quota) still leaves one to resume from; a crash
    between the two renames leaves only the previous one, which --resume also finds."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.replace(path, previous_path(path))
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        kept = f"; the previous checkpoint {path} is intact" if path.exists() else ""
        reason = "the disk is full" if err.errno == errno.ENOSPC else err.strerror
        raise UserError(f"could not write checkpoint {path}: {reason}{kept}. Free some space "
                        "or choose another --output_dir, then resume with --resume") from None


def read_checkpoint(path):
    """The checkpoint's contents on the CPU, or one clear line on what is wrong with the file.

    Always the CPU, whatever device trains: each piece then goes where it belongs as it is
    loaded (parameters and optimizer moments to their parameters' device by load_state_dict,
    AdamW's step counters stay on the CPU as torch keeps them, the random-number states are
    the CPU byte tensors torch.set_rng_state needs). Mapped onto a GPU, the RNG states would
    be refused and every AdamW step would wait on the GPU to read its step counters."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist") from None
    except Exception as err:  # zip/pickle errors of a truncated, corrupt or foreign file
        raise UserError(f"checkpoint {path} cannot be read ({type(err).__name__}); it is "
                        "corrupt or was not written by train.py") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"checkpoint {path} was not written by this project's train.py")
    return state
