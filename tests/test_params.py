"""`nnUNetv2_sam_params`: the Table 3 comparison, as a table and as JSON."""
import json

from nnunet_sam_adapter.cli.params import main
from nnunet_sam_adapter.methods import METHODS


def test_params_table_defaults(capsys):
    main([])
    out = capsys.readouterr().out
    assert "backbone vit_b, input 256x256, 6 adapters" in out
    assert "97.40M" in out and "10.73M" in out and "90.32M" in out and "3.65M" in out
    assert "98M total / 10.80M trainable (11%)" in out and "no IoU head" in out and "4.06M" in out


def test_params_json(capsys):
    main(["--json", "--adapter-depth", "12", "--num-classes", "3"])
    data = json.loads(capsys.readouterr().out)
    ours = data["models"][METHODS["ours"].label]
    assert data["adapter_depth"] == 12
    assert ours["parts"]["adapters"]["trainable"] == 12 * (2 * 768 * 768 + 768)
    assert sum(part["total"] for part in ours["parts"].values()) == ours["report"]["total"]
    assert data["models"]["single modality (1 -> 3)"]["parts"]["stems"]["total"] == 1 * 3 + 3


def test_params_of_the_3d_network():
    """ours_3d (issue #18) = ours + one depthwise 3x3x3 cross-slice adapter (27c weights + c biases) per block."""
    data = json.loads(_json_of(["--json"]))
    ours, ours_3d = data["models"][METHODS["ours"].label], data["models"][METHODS["ours_3d"].label]
    assert ours_3d["parts"]["cross-slice adapters"]["trainable"] == 12 * (27 * 768 + 768)
    assert ours["parts"]["cross-slice adapters"]["total"] == 0
    assert ours_3d["report"]["trainable"] - ours["report"]["trainable"] == 12 * (27 * 768 + 768)
    assert sum(part["total"] for part in ours_3d["parts"].values()) == ours_3d["report"]["total"]


def _json_of(argv):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(argv)
    return out.getvalue()
