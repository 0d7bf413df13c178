"""The method registry is the one list of methods: every trainer it names (and both budget variants of
each) is found the way nnUNetv2_train finds trainers, every list of methods elsewhere is derived from
its fields, and a method added to it shows up in those lists."""
import pydoc
from os.path import join

import nnunetv2
import pytest
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

from nnunet_sam_adapter import methods
from nnunet_sam_adapter.paths import trainer_dir
from nnunet_sam_adapter.evaluation.postprocessing import with_postprocessed
from nnunet_sam_adapter.methods import BUDGETS, METHODS, TABLES, Method, method_names, table_methods

NNUNET_TRAINERS = join(nnunetv2.__path__[0], "training", "nnUNetTrainer")


def nnunet_finds(class_name: str, folder: str) -> type | None:
    """What `nnUNetv2_train -tr class_name` finds in `folder`: nnU-Net's own trainers folder, or ours
    (nnUNet_extTrainer = trainer_dir(), modules imported by their plain names, as nnU-Net does)."""
    if folder == NNUNET_TRAINERS:
        return recursive_find_python_class(NNUNET_TRAINERS, class_name, "nnunetv2.training.nnUNetTrainer",
                                           nnunetv2.__path__[0])
    return recursive_find_python_class(folder, class_name, None, base_folder=folder,
                                       cleanup_imports_from_base_folder=True)


def _folder(method: Method) -> str:
    return NNUNET_TRAINERS if method.trainer.startswith("nnunetv2.") else trainer_dir()


@pytest.mark.parametrize("name", list(METHODS))
def test_every_trainer_and_its_budget_variants_are_found_by_nnunet(name):
    method = METHODS[name]
    trainer = pydoc.locate(method.trainer)  # the registry's dotted path imports
    assert isinstance(trainer, type) and issubclass(trainer, nnUNetTrainer), method.trainer
    found = nnunet_finds(method.trainer_name, _folder(method))
    assert found is not None and found.__name__ == method.trainer_name, f"nnU-Net does not find {method.trainer}"
    assert set(method.budget_variants) == {f"{method.trainer_name}_short", f"{method.trainer_name}_debug"}
    for variant_name, budget in method.budget_variants.items():
        if method.trainer.startswith("nnunetv2."):  # nnU-Net's own variants must not shadow ours
            assert nnunet_finds(variant_name, NNUNET_TRAINERS) is None
        variant = nnunet_finds(variant_name, trainer_dir())
        assert variant is not None, f"nnU-Net does not find {variant_name} in {trainer_dir()}"
        assert variant.__name__ == variant_name and variant.budget == budget
        assert issubclass(variant, trainer) and variant.__mro__[1].__name__ == "FixedBudget"


def test_budgets_are_10x10_short_and_2x4_debug():
    assert BUDGETS == {"short": (10, 10, 3), "debug": (2, 4, 2)}
    assert METHODS["ours"].budget_variants == {"SAMCrossModalTrainer_short": (10, 10, 3),
                                               "SAMCrossModalTrainer_debug": (2, 4, 2)}


def test_a_budget_variant_sets_epochs_and_iterations_on_the_trainer():
    from nnunet_sam_adapter.trainers.sam_trainers_short import make_budget_variant

    class Trainer:
        def __init__(self, plans, configuration, fold, dataset_json, device=None):
            self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1000, 250, 50

    variant = make_budget_variant(Trainer, "mine", 3, 7, 1)
    trainer = variant({}, "2d", 0, {})
    assert variant.__name__ == "Trainer_mine"
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (3, 7, 1)


def _names(**fields) -> tuple[str, ...]:
    return tuple(name for name, method in METHODS.items()
                 if all(getattr(method, key) == value for key, value in fields.items()))


def _rows(table: str) -> tuple[str, ...]:
    members = [(method.table_row, position, name) for position, (name, method) in enumerate(METHODS.items())
               if table in method.tables]
    return tuple(name for _, _, name in sorted(members))


def test_every_list_of_methods_is_derived_from_the_registry_fields():
    from nnunet_sam_adapter.apps import demo, gpu_check
    from nnunet_sam_adapter.reporting import crossval, tables
    from nnunet_sam_adapter.cli.benchmark import build_parser
    from nnunet_sam_adapter.speed import variants
    from nnunet_sam_adapter.trainers import gpu_check_trainers, sam_trainers_short

    assert methods.DEFAULT_METHODS == _names(default=True)
    assert methods.OPTIONAL_METHODS == _names(default=False)
    assert methods.SAM_METHODS == _names(is_sam=True, default=True)
    assert methods.CROSS_MODAL_METHODS == _names(cross_modal=True)
    assert methods.REFERENCE_METHODS == crossval.REFERENCE_METHODS == _names(reference=True)
    assert methods.VARIANT_METHODS == _names(reference=True, default=False)
    assert methods.QUICK_METHODS == gpu_check.TRAINED == demo.DemoSettings().methods == _names(quick=True)
    assert (variants.OURS.name, variants.EARLY_FUSION.name, variants.NNUNET_2D.name) == _names(quick=True)
    assert methods.ABLATIONS == tuple(n for n in _rows("ablation") if not METHODS[n].reference)
    assert tables.TABLE1_METHODS == with_postprocessed(_rows("table1"))
    assert tables.TABLE2_METHODS == with_postprocessed(_rows("table2"))
    assert tables.ABLATION_METHODS == with_postprocessed(_rows("ablation"))
    assert all(set(method.tables) <= set(TABLES) for method in METHODS.values())
    help_text = next(a.help for a in build_parser()._actions if "--methods" in a.option_strings)
    assert help_text.startswith(f"default: {' '.join(_names(default=True))}; also: {' '.join(_names(default=False))};")
    generated = {name for name, value in vars(sam_trainers_short).items() if isinstance(value, type)
                 and name.endswith(tuple(f"_{suffix}" for suffix in BUDGETS))}
    assert generated == {variant for method in METHODS.values() for variant in method.budget_variants}
    assert {name for name in vars(gpu_check_trainers) if name.endswith("_gpucheck")} == \
        {f"{METHODS[name].trainer_name}_gpucheck" for name in _names(quick=True)}
    for name in _names(is_sam=True):
        assert pydoc.locate(METHODS[name].trainer).method in METHODS


def test_the_tables_keep_the_papers_rows():
    assert table_methods("table1") == ("T1", "T1ce", "T2", "FLAIR", "early_fusion", "ours", "ours_plus")
    assert table_methods("table2") == ("swinunetr_2d", "unetr_2d", "early_fusion", "nnunet_2d", "nnunet_3d_fullres",
                                       "ours", "ours_plus", "ours_plus_up2", "ours_plus_ft", "ours_3d")
    assert table_methods("ablation") == ("ours", *methods.ABLATIONS, "ours_plus")


class MineTrainer(nnUNetTrainer):
    """The trainer class a new method writes out (here: stock nnU-Net under another name)."""


def test_a_registered_method_shows_up_in_every_derived_list(monkeypatch):
    from nnunet_sam_adapter.cli.benchmark import build_parser
    from nnunet_sam_adapter.trainers.sam_trainers_short import registry_budget_variants

    mine = Method("mine", "Mine", f"{__name__}.MineTrainer", "nnUNetPlans", "2d", default=True, reference=True,
                  tables=("table2",), table_row=METHODS["nnunet_2d"].table_row)
    monkeypatch.setitem(METHODS, "mine", mine)
    assert "mine" in method_names(default=True) and "mine" in method_names(reference=True)
    assert "mine" not in method_names(default=False)
    rows = table_methods("table2")
    assert rows.index("mine") == rows.index("nnunet_3d_fullres") + 1 < rows.index("ours")  # its row, registry order
    assert "mine" not in table_methods("table1") and "mine" not in methods.ablations()
    help_text = next(a.help for a in build_parser()._actions if "--methods" in a.option_strings)
    assert help_text.startswith("default: ours early_fusion T1 T1ce T2 FLAIR nnunet_2d mine; also:")
    variants = registry_budget_variants()
    assert variants["MineTrainer_short"].budget == (10, 10, 3)
    assert issubclass(variants["MineTrainer_debug"], MineTrainer)
    found = nnunet_finds("MineTrainer_debug", trainer_dir())  # nnU-Net's plain-name import reads the registry
    assert found is not None and found.budget == (2, 4, 2)


def test_ours_3d_is_a_sam_method_on_the_3d_configuration_with_every_generated_variant():
    """Issue #18: ours_3d trains on the SAM planner's 3d_sam configuration; its budget, seed and modality-dropout
    trainers are generated like every other trainer's and keep its method (hence its 3D network)."""
    from nnunet_sam_adapter.trainers import missing_modality_trainers, sam_trainers_short, seed_trainers

    ours_3d = METHODS["ours_3d"]
    assert (ours_3d.plans, ours_3d.configuration, ours_3d.is_sam, ours_3d.cross_modal, ours_3d.default) == \
        (methods.SAM_PLANS_NAME, methods.SAM_3D_CONFIGURATION, True, True, False)
    assert ours_3d.folder_name == "SAMCrossModal3DTrainer__nnUNetSAMPlans__3d_sam"
    assert METHODS["ours_3d_missing"].configuration == "3d_sam"
    trainer = ours_3d.trainer_class()
    generated = [vars(sam_trainers_short)["SAMCrossModal3DTrainer_debug"], vars(sam_trainers_short)["SAMCrossModal3DTrainer_short"],
                 vars(seed_trainers)["SAMCrossModal3DTrainer_seed1"],
                 vars(missing_modality_trainers)["SAMCrossModal3DTrainerMissingModality"], ours_3d.trainer_class(seed=2),
                 METHODS["ours_3d_missing"].trainer_class()]
    for variant in generated:
        assert issubclass(variant, trainer) and variant.method == "ours_3d"
    for name in ("SAMCrossModal3DTrainer_seed3", "SAMCrossModal3DTrainerMissingModality_debug"):
        assert nnunet_finds(name, trainer_dir()) is not None, name


def test_a_trainer_that_cannot_be_imported_names_the_cause():
    """pydoc.locate answers None for a missing module: the error says which import failed, and why."""
    from dataclasses import replace

    from nnunet_sam_adapter.methods import METHODS

    missing_module = replace(METHODS["nnunet_2d"], trainer="nnunet_sam_adapter.no_such_subpackage.Trainer")
    with pytest.raises(ImportError, match="cannot be imported: ModuleNotFoundError: No module named "
                                          "'nnunet_sam_adapter.no_such_subpackage'"):
        missing_module.trainer_class()
    missing_class = replace(METHODS["nnunet_2d"], trainer="nnunet_sam_adapter.methods.NoSuchTrainer")
    with pytest.raises(ImportError, match="nnunet_sam_adapter.methods has no attribute NoSuchTrainer"):
        missing_class.trainer_class()
