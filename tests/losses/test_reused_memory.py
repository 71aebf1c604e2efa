"""Memory kept between loss calls: reused only when nobody else can see it."""

from __future__ import annotations

import copy
import pickle

import torch

from tufl.losses import TUFL
from tufl.losses.backends.fused import fused_pixel_terms as focal_consistency_terms
from tufl.losses.backends.reused_memory import ReusedMemory

C = 5


def logits(seed: int, shape=(2, C, 6, 7)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = (torch.randn(shape, generator=g) * 3).requires_grad_()
    z2 = (torch.randn(shape, generator=g) * 3).requires_grad_()
    return z1, z2


def test_free_memory_is_handed_out_again():
    memory = ReusedMemory()
    first = memory.tensor("a", (3, 4), torch.float32, torch.device("cpu"))
    pointer = first.data_ptr()
    del first
    again = memory.tensor("a", (2, 5), torch.float32, torch.device("cpu"))  # smaller: same block
    assert again.data_ptr() == pointer and again.shape == (2, 5)


def test_memory_still_in_use_is_not_handed_out():
    memory = ReusedMemory()
    held = memory.tensor("a", (3, 4), torch.float32, torch.device("cpu"))
    held.fill_(7.0)
    view_of_it = held[1:]
    del held
    fresh = memory.tensor("a", (3, 4), torch.float32, torch.device("cpu"))
    fresh.fill_(-1.0)
    assert torch.equal(view_of_it, torch.full((2, 4), 7.0))  # the view still sees its own values


def test_other_names_dtypes_and_larger_sizes_get_their_own_memory():
    memory = ReusedMemory()
    cpu = torch.device("cpu")
    a = memory.tensor("a", (4,), torch.float32, cpu).data_ptr()
    assert memory.tensor("b", (4,), torch.float32, cpu).data_ptr() != a
    assert memory.tensor("a", (4,), torch.int64, cpu).dtype == torch.int64
    assert memory.tensor("a", (400,), torch.int64, cpu).numel() == 400


def test_copies_and_pickles_start_empty():
    loss_fn = TUFL(C)
    z1, z2 = logits(0)
    loss_fn(z1, z2).backward()
    assert loss_fn._memory._flat  # buffers are kept after a call on the CPU
    assert not copy.deepcopy(loss_fn)._memory._flat
    assert not pickle.loads(pickle.dumps(loss_fn))._memory._flat


def test_training_steps_reuse_the_gradient_maps_with_unchanged_results():
    """Second step: the gradient maps come from the first step's memory, and every value
    equals a call without kept memory."""
    kept, plain = TUFL(C), TUFL(C)
    plain._memory = None  # type: ignore[assignment]  # every call allocates afresh
    pointers = []
    for seed in (1, 2):
        results = []
        for loss_fn in (kept, plain):
            z1, z2 = logits(seed)
            loss = loss_fn(z1, z2)
            loss.backward()
            results.append((loss.detach(), z1.grad, z2.grad, loss_fn.thresholds.clone()))
            if loss_fn is kept:
                pointers.append((z1.grad.data_ptr(), z2.grad.data_ptr()))
        for got, expected in zip(*results):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
        del results, z1, z2  # the gradients are released, as a training loop releases them
    assert pointers[0] == pointers[1]


def test_a_gradient_kept_by_the_caller_is_never_overwritten():
    loss_fn = TUFL(C)
    z1, z2 = logits(3)
    loss_fn(z1, z2).backward()
    kept_grad, kept_values = z1.grad, z1.grad.clone()
    other1, other2 = logits(4)
    loss_fn(other1, other2).backward()
    assert torch.equal(kept_grad, kept_values)
    assert other1.grad.data_ptr() != kept_grad.data_ptr()


def test_two_calls_before_one_backward_keep_their_own_gradients():
    loss_fn = TUFL(C)
    loss_fn.eval()  # fixed thresholds: the two calls are independent
    (a1, a2), (b1, b2) = logits(5), logits(6)
    (loss_fn(a1, a2) + 2.0 * loss_fn(b1, b2)).backward()
    for z1, z2, factor in ((a1, a2, 1.0), (b1, b2, 2.0)):
        fresh = TUFL(C).eval()
        x1, x2 = z1.detach().clone().requires_grad_(), z2.detach().clone().requires_grad_()
        (factor * fresh(x1, x2)).backward()
        torch.testing.assert_close(z1.grad, x1.grad, rtol=0, atol=0)
        torch.testing.assert_close(z2.grad, x2.grad, rtol=0, atol=0)


def test_calls_in_inference_mode_do_not_break_later_training_calls():
    loss_fn = TUFL(C)
    z1, z2 = logits(7)
    with torch.inference_mode():
        loss_fn(z1.detach(), z2.detach())
    loss_fn(z1, z2).backward()  # used to fail: kept memory had become an inference tensor
    reference = TUFL(C)
    reference.load_state_dict(loss_fn.state_dict())
    x1, x2 = logits(8)
    y1, y2 = x1.detach().clone().requires_grad_(), x2.detach().clone().requires_grad_()
    loss_fn(x1, x2).backward()
    reference._memory = None  # type: ignore[assignment]
    reference(y1, y2).backward()
    torch.testing.assert_close(x1.grad, y1.grad, rtol=0, atol=0)
    torch.testing.assert_close(x2.grad, y2.grad, rtol=0, atol=0)


def test_a_compiled_caller_runs_the_eager_loss_correctly():
    """torch.compile around code that calls TUFL: the fused loss runs eagerly (a graph break)
    and gives the eager results, with its kept memory, step after step."""
    compiled_fn, eager_fn = TUFL(C), TUFL(C)
    step = torch.compile(lambda a, b: compiled_fn(a, b) * 2.0, backend="eager")
    for seed in (9, 10):
        z1, z2 = logits(seed)
        x1, x2 = z1.detach().clone().requires_grad_(), z2.detach().clone().requires_grad_()
        step(z1, z2).backward()
        (eager_fn(x1, x2) * 2.0).backward()
        torch.testing.assert_close(z1.grad, x1.grad, rtol=0, atol=0)
        torch.testing.assert_close(z2.grad, x2.grad, rtol=0, atol=0)
    torch.testing.assert_close(compiled_fn.thresholds, eager_fn.thresholds, rtol=0, atol=0)


def test_kept_cpu_memory_is_released_when_the_loss_moves_to_another_device():
    """The meta device stands in for a GPU here: the same code path, without kept memory."""
    memory = ReusedMemory()
    z1, z2 = logits(11)
    focal_consistency_terms(z1, z2, 2.0, 1, None, False, memory)[0].sum().backward()
    assert memory._flat
    m1 = torch.empty(2, C, 6, 7, device="meta", requires_grad=True)
    m2 = torch.empty(2, C, 6, 7, device="meta", requires_grad=True)
    focal_consistency_terms(m1, m2, 2.0, 1, None, False, memory)[0].sum().backward()
    assert m1.grad.shape == m1.shape and not memory._flat
