"""The method registry: every dotted path it names resolves, and old plans keep resolving."""
import pydoc

from nnunet_sam_adapter.methods import (CROSS_MODAL_CLASS, DEFAULT_METHODS, LEGACY_CROSS_MODAL_CLASSES, METHODS,
                                        OPTIONAL_METHODS, SAM_METHODS)
from nnunet_sam_adapter.model.network import SAMCrossModalNetwork


def test_network_class_paths_resolve_as_nnunet_resolves_them():
    assert pydoc.locate(CROSS_MODAL_CLASS) is SAMCrossModalNetwork
    for legacy in LEGACY_CROSS_MODAL_CLASSES:  # plans written before the stage subpackages
        assert pydoc.locate(legacy) is SAMCrossModalNetwork


def test_every_method_names_an_importable_trainer():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    for method in METHODS.values():
        trainer = pydoc.locate(method.trainer)
        assert isinstance(trainer, type) and issubclass(trainer, nnUNetTrainer), method.trainer
        assert method.folder_name == f"{trainer.__name__}__{method.plans}__{method.configuration}"


def test_sam_trainers_build_their_own_method():
    for name in SAM_METHODS:
        assert pydoc.locate(METHODS[name].trainer).method == name


def test_default_and_optional_methods_partition_the_registry():
    assert set(DEFAULT_METHODS) | set(OPTIONAL_METHODS) == set(METHODS)
    assert not set(DEFAULT_METHODS) & set(OPTIONAL_METHODS)
