"""Expected failures of a console command -> one line on stderr and a non-zero exit; bugs keep their traceback.

Expected: bad input, i.e. the ValueError subclasses this package defines (InputError, EvaluationError,
SAMCheckpointError, SAMPlansError, ModalityError, PatchSizeError: their messages name the file and what
was expected), and the environment refusing a read or a write (``OSError``: read-only folder, an
output path that is a file, a full disk, a missing folder). A plain ValueError from a library is a bug.
"""
from __future__ import annotations

import errno
import sys
from contextlib import contextmanager


def is_input_error(error: BaseException) -> bool:
    """One of this package's ValueError subclasses (checked by module, so no stage has to be imported)."""
    return isinstance(error, ValueError) and type(error).__module__.startswith("nnunet_sam_adapter.")


def describe_os_error(error: OSError) -> str:
    """'cannot write /x/y: Permission denied' (the file and the reason, no errno repr)."""
    target = f" {error.filename}" if error.filename else ""
    if error.filename2:
        target += f" -> {error.filename2}"
    reason = error.strerror or str(error)
    hints = {errno.EACCES: "expected a folder you can write to", errno.EROFS: "expected a writable file system",
             errno.ENOSPC: "free some disk space", errno.ENOTDIR: "a path component is a file, expected a folder",
             errno.EEXIST: "expected a folder, found a file"}
    hint = hints.get(error.errno)
    return f"cannot access{target}: {reason}" + (f" ({hint})" if hint else "")


@contextmanager
def one_line_errors(prog: str, extra: tuple = (), exit_code: int = 1):
    """``with one_line_errors("nnUNetv2_sam_x"):`` around a command's work: expected failures (see module
    docstring, plus ``extra`` exception types) exit with ``exit_code`` and ``prog: error: <message>``."""
    try:
        yield
    except OSError as error:
        print(f"{prog}: error: {describe_os_error(error)}", file=sys.stderr)
        sys.exit(exit_code)
    except Exception as error:
        if not (is_input_error(error) or isinstance(error, tuple(extra))):
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        sys.exit(exit_code)
