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
