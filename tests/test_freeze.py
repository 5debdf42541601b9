"""Each strategy trains exactly the parameters it should: frozen ones stay bit-identical after real
optimizer steps (BatchNorm running statistics included for a frozen backbone)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgetl.card import HeadConfig
from edgetl.errors import EdgetlError
from edgetl.models.factory import card_for, create_model
from edgetl.models.freeze import apply_freeze, head_param_names, stage_param_names, trainable_stages
from edgetl.train.loop import StepSettings, train_one_epoch
from edgetl.train.optim import build_optimizer, lr_at, param_groups

ARCHS = ("test_efficientnet", "test_resnet")

pytestmark = pytest.mark.usefixtures("single_thread")


def _model(arch: str, hidden: int = 0) -> nn.Module:
    torch.manual_seed(0)
    return create_model(card_for(arch, ["a", "b", "c"], img_size=32, head=HeadConfig(dropout=0.1, hidden=hidden)))


def _batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def _step(model: nn.Module, n_trainable: int) -> dict[str, torch.Tensor]:
    """Freeze, take real optimizer steps through the training loop; return the state before."""
    apply_freeze(model, n_trainable)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = build_optimizer(model, lr=1e-2, weight_decay=0.05)
    train_one_epoch(model, _batches(), nn.CrossEntropyLoss(), opt, StepSettings(torch.device("cpu"), clip_grad=1.0),
                    epoch=0, first_step=0, lr_for_step=lambda s: 1e-2, num_classes=3)
    return before


def _changed(model: nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    return {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}


@pytest.mark.parametrize("arch", ARCHS)
def test_stages_are_found_generically(arch: str) -> None:
    model = _model(arch)
    stages = stage_param_names(model)
    head = head_param_names(model)
    assert len(stages) >= 4 and head
    flat = [n for s in stages for n in s]
    assert sorted(flat + head) == sorted(n for n, _ in model.named_parameters())  # a partition
    assert stages[0][0] in ("conv_stem.weight", "conv1.0.weight")  # input first


@pytest.mark.parametrize("arch", ARCHS)
def test_linear_probe_trains_only_the_head_and_keeps_bn_statistics(arch: str) -> None:
    model = _model(arch)
    before = _step(model, 0)
    changed = _changed(model, before)
    assert {k for k in changed if not k.startswith(("classifier.", "fc."))} == set()
    assert set(head_param_names(model)) <= changed


@pytest.mark.parametrize("arch", ARCHS)
def test_full_trains_everything(arch: str) -> None:
    model = _model(arch)
    n = len(stage_param_names(model))
    before = _step(model, trainable_stages("full", n))
    params = {name for name, _ in model.named_parameters()}
    assert params <= _changed(model, before)
    assert any(k.endswith("running_mean") for k in _changed(model, before))


def test_partial_trains_the_top_stages_and_hidden_head_bn() -> None:
    model = _model("test_efficientnet", hidden=16)
    stages = stage_param_names(model)
    before = _step(model, trainable_stages("partial", len(stages), unfreeze=2))
    changed = _changed(model, before)
    top = set(stages[-2] + stages[-1])
    bottom = {n for s in stages[:-2] for n in s}
    assert top <= changed and not (bottom & changed)
    assert "classifier.1.running_mean" in changed  # the head's own BatchNorm still trains
    bn_buffers = {k for k in changed if "running" in k and not k.startswith("classifier.")}
    assert bn_buffers and all(k.rsplit(".", 1)[0] + ".weight" in top for k in bn_buffers)


def test_gradual_schedule_and_errors() -> None:
    assert [trainable_stages("gradual", 3, e, unfreeze_every=2) for e in range(9)] == [0, 0, 1, 1, 2, 2, 3, 3, 3]
    assert trainable_stages("linear-probe", 5) == 0 and trainable_stages("full", 5) == 5
    with pytest.raises(EdgetlError, match="0..5"):
        trainable_stages("partial", 5, unfreeze=9)
    with pytest.raises(EdgetlError, match="linear-probe, full, partial, gradual"):
        trainable_stages("some", 5)


def test_no_weight_decay_on_norms_and_biases_and_backbone_lr_mult() -> None:
    model = _model("test_resnet")
    groups = {g["name"]: g for g in param_groups(model, weight_decay=0.05, backbone_lr_mult=0.1)}
    assert set(groups) == {"backbone_decay", "backbone_no_decay", "head_decay", "head_no_decay"}
    for name, g in groups.items():
        assert g["weight_decay"] == (0.0 if name.endswith("no_decay") else 0.05)
        assert g["lr_scale"] == (0.1 if name.startswith("backbone") else 1.0)
    for name, g in groups.items():
        assert all((p.ndim <= 1) == name.endswith("no_decay") for p in g["params"])
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))


def test_a_norm_alone_is_not_a_stage() -> None:
    """ConvNeXt's head.norm is its own timm group; as a stage, --unfreeze 1 would train that norm alone."""
    model = create_model(card_for("test_convnext", ["a", "b"], img_size=32))
    stages = stage_param_names(model)
    assert stages[-1][-2:] == ["head.norm.weight", "head.norm.bias"]
    assert any(n.startswith("stages.3.") for n in stages[-1])  # the norm goes with the last block stage


def test_head_dropout_is_applied_once_with_a_hidden_head() -> None:
    model = create_model(card_for("test_resnet", ["a", "b"], img_size=32, head=HeadConfig(dropout=0.5, hidden=16)))
    assert getattr(model, "drop_rate", 0.0) == 0.0  # timm's pre-classifier dropout off: the new head has its own
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5]


def test_freeze_bn_keeps_backbone_statistics_and_lets_a_new_head_bn_learn() -> None:
    from edgetl.models.factory import head_prefixes
    from edgetl.models.freeze import frozen_bn_to_eval

    model = _model("test_resnet", hidden=16)
    model.train()
    frozen_bn_to_eval(model, all_bn=True)
    head = head_prefixes(model)
    modes = {n: m.training for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    assert [n for n, training in modes.items() if training] == [n for n in modes if n.startswith(head)] != []


def test_lr_schedule_warms_up_linearly_then_decays_by_cosine() -> None:
    """The first step already learns (1/warmup of the rate, not 0), the last warm-up step reaches the full rate,
    and the cosine ends at ``min_ratio`` of it."""
    assert lr_at(0, 1.0, 100, 10) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 100, 10) == pytest.approx(1.0) == lr_at(10, 1.0, 100, 10)
    assert lr_at(55, 1.0, 100, 10) == pytest.approx(0.5)  # halfway through the decay
    assert lr_at(100, 1.0, 100, 10, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_at(0, 1.0, 100, 0) == pytest.approx(1.0)  # no warm-up: the full rate at once
