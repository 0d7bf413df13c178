"""One training step of ours through DistributedDataParallel, two ranks, gloo backend, on CPU (issue 9).

nnU-Net's multi-GPU path (`nnUNetv2_train ... -num_gpus N`) cannot be driven on CPU, so this test wraps
the network the way `nnUNetTrainer.initialize` does (`convert_sync_batchnorm`, then `DDP(network)`)
and uses nnU-Net's own DDP-aware loss (`DC_and_CE_loss` with ddp=True: batch Dice all-gathered
across ranks). Why not nnU-Net's entry point (nnunetv2 2.8.1, run/run_training.py):
`run_training` asserts `device.type == 'cuda'` when num_gpus > 1, `setup_ddp` hard-codes the 'nccl'
backend (CUDA only), `run_ddp` calls `torch.cuda.set_device`, and `nnUNetTrainer.__init__` forces
`cuda:<rank>` whenever a process group exists.

Checked: two steps run without DDP's unused-parameter error (raised at the step after a trainable
parameter got no gradient); both ranks hold identical gradients, equal (rtol 1e-4, atol 1e-6) to one
process on the concatenated batch.
"""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD, PER_RANK, SIZE = 2, 2, 32


def _network_and_loss(ddp: bool):
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    from nnunet_sam_adapter.model.network import SAMCrossModalNetwork

    torch.manual_seed(0)
    net = SAMCrossModalNetwork(4, 2, "tiny", SIZE, adapter_depth=2, autocast="off").train()
    with torch.no_grad():
        for adapter in net.adapters:
            adapter.fuse.weight.normal_(0, 0.05)
    loss = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": ddp}, {},
                          weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    return net, loss


def _batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(WORLD * PER_RANK, 4, SIZE, SIZE, generator=g)
    y = (torch.rand(WORLD * PER_RANK, 1, SIZE, SIZE, generator=g) > 0.7).long()
    return x, y


def _first_step_grads(model, net, loss_fn, x, y, steps: int = 2) -> dict:
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    grads = None
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        if grads is None:
            grads = {n: p.grad for n, p in net.named_parameters() if p.requires_grad}  # None: unused
        optimizer.step()
    return grads


def _rank(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        net, loss_fn = _network_and_loss(ddp=True)
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.SyncBatchNorm.convert_sync_batchnorm(net))
        x, y = _batch()
        shard = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        torch.save(_first_step_grads(model, net, loss_fn, x[shard], y[shard]), f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_step_equals_one_process_on_the_whole_batch(tmp_path):
    torch.set_num_threads(1)
    mp.spawn(_rank, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    net, loss_fn = _network_and_loss(ddp=False)
    single = _first_step_grads(net, net, loss_fn, *_batch(), steps=1)
    assert ranks[0].keys() == ranks[1].keys() == single.keys()
    assert any(k.startswith("adapters") for k in single) and any(k.startswith("stems") for k in single)
    assert all(g is not None for g in single.values()), [n for n, g in single.items() if g is None]
    for name in single:
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0, msg=name)
        torch.testing.assert_close(ranks[0][name], single[name], rtol=1e-4, atol=1e-6, msg=name)
