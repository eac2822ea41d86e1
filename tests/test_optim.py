"""micrograd_cy.optim: SGD, Adam and AdamW against torch.optim, the schedules against
torch.optim.lr_scheduler, state_dict round trips, and hostile input.

The oracle is PyTorch float64. Each comparison feeds torch's optimizer the gradients our
engine computed for our model, step after step, so that what is compared is the optimizers'
arithmetic alone; torch's vectorized kernels fuse some multiply-adds (an FMA), so the
parameters agree to relative 1e-12, not to the bit.
"""
import copy
import json
import math
import pickle
import random
import sys

import pytest

from conftest import close, notebook_step
from micrograd_cy import Value, datasets, nn, optim, train
from micrograd_cy.optim import (SGD, Adam, AdamW, CosineAnnealingLR, LambdaLR, LinearLR,
                                Optimizer)
from test_reliability import run_in_threads

OPTIMIZERS = [SGD, Adam, AdamW]
REL = 1e-12


def same(ours, theirs, rel=REL):
    """Each number to relative 1e-12 (absolute 1e-12 for those near 0: the parameters are
    of order 1, and one that passes near 0 keeps the absolute error of the others)."""
    ours, theirs = list(ours), list(theirs)
    return len(ours) == len(theirs) and all(close(a, b, rel=rel, abs_tol=rel)
                                            for a, b in zip(ours, theirs))


def moons_model(seed=1337, sizes=(16, 16, 1)):
    random.seed(seed)
    return nn.MLP(2, list(sizes))


@pytest.fixture(scope="module")
def moons():
    return datasets.moons()


# -- micrograd's loop, bit for bit ------------------------------------------------------------

def test_sgd_trains_the_demo_to_the_same_numbers_as_micrograds_loop():
    histories = []
    for use_sgd in (False, True):
        X, y = datasets.moons()
        model = moons_model()
        opt = SGD(model.parameters())
        history = []
        for k in range(8):
            loss, _ = train.svm_loss_fused(model, X, y, Value)
            learning_rate = train.learning_rate(k, 100)
            if use_sgd:
                opt.zero_grad()
                loss.backward()
                opt.step(learning_rate)
            else:
                notebook_step(model, loss, k)
            history.append(loss.data)
        histories.append((history, [p.data for p in model.parameters()]))
    assert histories[0] == histories[1]  # bit for bit


def test_the_demo_schedule_is_linear_lr_from_1_to_a_tenth(moons):
    """micrograd's demo rate, 1 - 0.9 * k / 100, through LinearLR(opt, 1.0, 0.1, 100):
    the same rates to relative 1e-15 (LinearLR is recursive, the demo's closed form)."""
    opt = SGD([Value(0.0)], lr=1.0)
    schedule = LinearLR(opt, 1.0, 0.1, 100)
    for k in range(100):
        assert close(opt.lr, train.learning_rate(k, 100), rel=1e-15)
        opt.step()
        schedule.step()


def test_step_uses_its_own_rate_unless_given_one_and_zero_grad_zeroes():
    a, b = Value(1.0), Value(-2.0)
    opt = SGD([a, b], lr=0.5)
    (a * b).backward()
    opt.step()
    assert (a.data, b.data) == (1.0 - 0.5 * -2.0, -2.0 - 0.5 * 1.0)
    opt.step(0.25)
    assert (a.data, b.data) == (2.0 - 0.25 * -2.0, -2.5 - 0.25 * 1.0)
    opt.zero_grad()
    assert (a.grad, b.grad) == (0.0, 0.0)
    opt.lr = 0.1
    assert opt.lr == 0.1 and len(opt) == 2 and opt.params == [a, b]
    assert repr(opt) == "SGD(2 parameters, lr=0.1)"
    assert repr(Adam([a], betas=(0.85, 0.99))) == "Adam(1 parameters, lr=0.001, betas=(0.85, 0.99))"
    assert repr(AdamW([a], weight_decay=0.0)) == "AdamW(1 parameters, lr=0.001, weight_decay=0.0)"


# -- against torch.optim ----------------------------------------------------------------------

CONFIGS = [
    (SGD, dict(lr=0.1)),
    (SGD, dict(lr=0.1, momentum=0.9)),
    (SGD, dict(lr=0.05, momentum=0.8, dampening=0.1)),
    (SGD, dict(lr=0.05, weight_decay=1e-3)),
    (SGD, dict(lr=0.05, momentum=0.8, dampening=0.1, weight_decay=1e-3)),
    (SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    (Adam, dict()),
    (Adam, dict(lr=0.01)),
    (Adam, dict(lr=0.01, betas=(0.85, 0.99), eps=1e-6)),
    (Adam, dict(lr=0.01, weight_decay=1e-2)),
    (Adam, dict(lr=0.01, amsgrad=True)),
    (Adam, dict(lr=0.01, weight_decay=1e-2, amsgrad=True, betas=(0.5, 0.9))),
    (AdamW, dict()),
    (AdamW, dict(lr=0.01)),
    (AdamW, dict(lr=0.02, weight_decay=0.1, amsgrad=True)),
    (AdamW, dict(lr=0.01, weight_decay=0.0, betas=(0.0, 0.5))),
]


def _id(config):
    cls, kwargs = config
    return cls.__name__ + "".join(f"-{k}={v}" for k, v in kwargs.items())


def torch_twin(torch, cls, kwargs, params, schedule=None):
    """torch's optimizer (single-tensor arithmetic) over one float64 tensor holding params."""
    tensor = torch.tensor([p.data for p in params], dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, cls.__name__)([tensor], foreach=False, **kwargs)
    return tensor, opt


def lockstep(torch, cls, kwargs, steps, X, y, classes=2, schedules=None, sizes=(16, 16, 1)):
    """Train nn.MLP with ours and, on the same gradients, torch's; the parameters after every
    step, and the rates, must agree."""
    model = moons_model(sizes=sizes)
    params = model.parameters()
    ours = cls(params, **kwargs)
    tensor, theirs = torch_twin(torch, cls, kwargs, params)
    if schedules is not None:
        ours_schedule, theirs_schedule = schedules(ours, optim), \
            schedules(theirs, torch.optim.lr_scheduler)
    loss = train.loss_of(model, X, y, classes)[0]
    first = loss.data
    for k in range(steps):
        if k:
            loss.forward()  # the graph, replayed on the parameters of this step
        ours.zero_grad()
        loss.backward()
        tensor.grad = torch.tensor([p.grad for p in params], dtype=torch.float64)
        ours.step()
        theirs.step()
        assert same([p.data for p in params], tensor.detach().tolist()), k
        if schedules is not None:
            ours_schedule.step()
            theirs_schedule.step()
            assert ours.lr == theirs.param_groups[0]["lr"], k  # bit for bit
            assert ours_schedule.get_last_lr() == theirs_schedule.get_last_lr()
    return first, loss.data


@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_each_optimizer_trains_the_demo_model_as_torch_optim_does(config, moons, torch):
    cls, kwargs = config
    first, last = lockstep(torch, cls, kwargs, 200, *moons)
    assert last < first / 3  # it did train


@pytest.mark.parametrize("config", [CONFIGS[4], CONFIGS[12], CONFIGS[15]], ids=_id)
def test_the_same_on_three_classes_with_a_cross_entropy_loss(config, torch):
    data = datasets.load("blobs")
    cls, kwargs = config
    lockstep(torch, cls, kwargs, 100, data.X[:60], data.y[:60], classes=3, sizes=(8, 3))


SCHEDULES = {
    "LinearLR-default": lambda opt, m: m.LinearLR(opt),
    "LinearLR-decay-to-0": lambda opt, m: m.LinearLR(opt, 1.0, 0.0, 150),
    "LinearLR-warmup": lambda opt, m: m.LinearLR(opt, 0.25, 1.0, 40),
    "CosineAnnealingLR": lambda opt, m: m.CosineAnnealingLR(opt, 200),
    "CosineAnnealingLR-restarts": lambda opt, m: m.CosineAnnealingLR(opt, 30, eta_min=1e-4),
    "LambdaLR": lambda opt, m: m.LambdaLR(opt, lambda epoch: 0.97 ** epoch),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedules_set_the_rates_torchs_schedulers_set(name, moons, torch):
    for cls, kwargs in [(SGD, dict(lr=0.1, momentum=0.9)), (Adam, dict(lr=0.01))]:
        lockstep(torch, cls, kwargs, 200, *moons, schedules=SCHEDULES[name])


def test_constructing_a_schedule_sets_the_first_rate_as_torch_does(torch):
    for make in SCHEDULES.values():
        ours = Adam([Value(1.0)], lr=0.3)
        theirs = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.3)
        a, b = make(ours, optim), make(theirs, torch.optim.lr_scheduler)
        assert ours.lr == theirs.param_groups[0]["lr"] and a.last_epoch == b.last_epoch == 0
        assert a.get_last_lr() == b.get_last_lr() and a.base_lrs == b.base_lrs == [0.3]


# -- hand-written loops, reproduced -----------------------------------------------------------

def test_microgpts_adam_loop_is_adam_with_linear_lr_to_0():
    """microgpt's loop: Adam with betas (0.85, 0.99), eps 1e-8, and a rate falling linearly
    to 0, written by hand over Python floats; optim.Adam with LinearLR(opt, 1.0, 0.0, steps)
    gives the same losses and parameters to relative 1e-12."""
    data = datasets.load("blobs")
    X, y = data.X[:45], data.y[:45]
    lr, beta1, beta2, eps, num_steps = 0.01, 0.85, 0.99, 1e-8, 60

    random.seed(7)
    model = nn.MLP(2, [8, 3])
    params = model.parameters()
    m, v = [0.0] * len(params), [0.0] * len(params)
    by_hand = []
    for step in range(num_steps):
        loss = train.loss_of(model, X, y, 3)[0]
        loss.backward()
        lr_t = lr * (1 - step / num_steps)
        for i, p in enumerate(params):
            m[i] = beta1 * m[i] + (1 - beta1) * p.grad
            v[i] = beta2 * v[i] + (1 - beta2) * p.grad ** 2
            m_hat = m[i] / (1 - beta1 ** (step + 1))
            v_hat = v[i] / (1 - beta2 ** (step + 1))
            p.data -= lr_t * m_hat / (v_hat ** 0.5 + eps)
            p.grad = 0
        by_hand.append(loss.data)

    random.seed(7)
    model = nn.MLP(2, [8, 3])
    opt = Adam(model.parameters(), lr=lr, betas=(beta1, beta2), eps=eps)
    schedule = LinearLR(opt, 1.0, 0.0, num_steps)
    ours = []
    for step in range(num_steps):
        loss = train.loss_of(model, X, y, 3)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        ours.append(loss.data)
    assert same(ours, by_hand)
    assert same([p.data for p in model.parameters()], [p.data for p in params])
    assert opt.lr == 0.0 and ours[-1] < ours[0]


def test_llm101ns_adamw_loop_is_adamw():
    """LLM101n's AdamW: p -= lr * (m_hat / (sqrt(v_hat) + 1e-8) + wd * p), betas (0.9, 0.95),
    lr 0.1, wd 1e-4, written by hand; optim.AdamW gives its numbers to relative 1e-12."""
    X, y = datasets.moons(n_samples=40)
    lr, (beta1, beta2), wd, steps = 0.1, (0.9, 0.95), 1e-4, 60
    runs = []
    for by_hand in (True, False):
        model = moons_model(seed=3, sizes=(8, 1))
        params = model.parameters()
        opt = AdamW(params, lr=lr, betas=(beta1, beta2), weight_decay=wd)
        m, v = [0.0] * len(params), [0.0] * len(params)
        losses = []
        for t in range(1, steps + 1):
            loss = train.loss_of(model, X, y, 2)[0]
            opt.zero_grad()
            loss.backward()
            if by_hand:
                for i, p in enumerate(params):
                    m[i] = beta1 * m[i] + (1 - beta1) * p.grad
                    v[i] = beta2 * v[i] + (1 - beta2) * p.grad ** 2
                    m_hat = m[i] / (1 - beta1 ** t)
                    v_hat = v[i] / (1 - beta2 ** t)
                    p.data -= lr * (m_hat / (v_hat ** 0.5 + 1e-8) + wd * p.data)
            else:
                opt.step()
            losses.append(loss.data)
        runs.append((losses, [p.data for p in params]))
    assert same(runs[0][0], runs[1][0]) and same(runs[0][1], runs[1][1])
    assert runs[1][0][-1] < runs[1][0][0]


# -- state_dict, pickle, copy -----------------------------------------------------------------

@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[4], CONFIGS[6], CONFIGS[12],
                                    CONFIGS[15]], ids=_id)
@pytest.mark.parametrize("carry", ["state_dict", "json", "pickle", "deepcopy"])
def test_training_resumed_from_a_saved_state_is_training_uninterrupted(config, carry, moons):
    cls, kwargs = config
    X, y = moons

    def steps(model, opt, schedule, n):
        for _ in range(n):
            loss = train.loss_of(model, X, y, 2)[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()

    model = moons_model()
    opt = cls(model.parameters(), **kwargs)
    schedule = CosineAnnealingLR(opt, 20)
    steps(model, opt, schedule, 30)
    uninterrupted = [p.data for p in model.parameters()]

    model = moons_model()
    opt = cls(model.parameters(), **kwargs)
    schedule = CosineAnnealingLR(opt, 20)
    steps(model, opt, schedule, 12)
    if carry == "state_dict":
        saved = (model.state_dict(), opt.state_dict(), schedule.state_dict())
    elif carry == "json":  # torch's shape, through text: the state's keys become strings
        saved = json.loads(json.dumps([model.state_dict(), opt.state_dict(),
                                       schedule.state_dict()]))
        saved[1]["state"] = {int(k): v for k, v in saved[1]["state"].items()}  # betas: a list
    if carry in ("state_dict", "json"):
        model = moons_model(seed=99)
        model.load_state_dict(saved[0])
        opt = cls(model.parameters())  # the hyperparameters come with the state
        schedule = CosineAnnealingLR(opt, 20)  # before the optimizer's state, as with torch
        opt.load_state_dict(saved[1])
        schedule.load_state_dict(saved[2])
    else:
        again = pickle.loads(pickle.dumps((model, opt, schedule))) if carry == "pickle" \
            else copy.deepcopy((model, opt, schedule))
        model, opt, schedule = again
        assert opt.params == model.parameters()  # the copy updates the copied model
    steps(model, opt, schedule, 18)
    assert [p.data for p in model.parameters()] == uninterrupted  # bit for bit


def test_state_dict_has_torchs_shape():
    a, b = Value(1.0), Value(2.0)
    opt = Adam([a, b], lr=0.01, amsgrad=True)
    assert opt.state_dict() == {"state": {}, "param_groups": [
        {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
         "amsgrad": True, "params": [0, 1]}]}
    a.grad, b.grad = 1.0, -1.0
    opt.step()
    state = opt.state_dict()["state"]
    assert list(state) == [0, 1] and list(state[0]) == ["step", "exp_avg", "exp_avg_sq",
                                                        "max_exp_avg_sq"]
    assert state[0]["step"] == 1.0 and close(state[0]["exp_avg"], 0.1)
    sgd = SGD([a], momentum=0.5)
    assert sgd.state_dict()["state"] == {}
    sgd.step()
    assert sgd.state_dict()["state"] == {0: {"momentum_buffer": 1.0}}  # the first grad
    assert SGD([a]).state_dict()["param_groups"] == [
        {"lr": 0.01, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False,
         "params": [0]}]


def test_a_state_dict_maps_saved_ids_to_parameters_in_order_as_torch_does():
    a, b = Value(1.0), Value(2.0)
    opt = SGD([a, b], momentum=0.9)
    saved = {"state": {7: {"momentum_buffer": 0.5}, 3: {"momentum_buffer": -0.5}},
             "param_groups": [{"lr": 0.1, "momentum": 0.9, "dampening": 0.0,
                               "weight_decay": 0.0, "nesterov": False, "params": [3, 7]}]}
    opt.load_state_dict(saved)
    assert opt.state_dict()["state"] == {0: {"momentum_buffer": -0.5},
                                         1: {"momentum_buffer": 0.5}}
    assert opt.lr == 0.1


def test_an_optimizer_pickles_with_its_parameters_and_state():
    opt = Adam([Value(3.0)], lr=0.2)
    p = opt.params[0]
    p.grad = 1.0
    opt.step()
    again = pickle.loads(pickle.dumps(opt))
    assert again.state_dict() == opt.state_dict() and type(again) is Adam
    again.step()
    opt.step()
    assert again.params[0].data == p.data and again.params[0] is not p  # its own copy
    shallow = copy.copy(opt)
    assert shallow.params[0] is p and shallow.state_dict() == opt.state_dict()


# -- bad input --------------------------------------------------------------------------------

# the parameters are made inside the test: an op node made here, at collection, would live
# the whole session and keep the engine's tape from ever emptying (test_reliability's
# compaction test then saw a tape that never had to compact)
BAD = [
    (SGD, lambda: [Value(1.0), 2.0], {}, TypeError, "parameter 1 is 'float', not a Value"),
    (Adam, lambda: [{"params": [Value(1.0)]}], {}, TypeError, "parameter groups are not"),
    (SGD, lambda: [Value(1.0) * 2.0], {}, ValueError, "parameter 0 is not a leaf"),
    (AdamW, lambda: 3, {}, TypeError, "not iterable"),
    (Adam, lambda: [Value(1.0)] * 2, {}, ValueError, "parameter 1 appears twice"),
    (SGD, None, dict(lr=math.nan), ValueError, "lr must be a finite number"),
    (SGD, None, dict(lr=math.inf), ValueError, "lr must be a finite number"),
    (Adam, None, dict(lr=-0.1), ValueError, "lr must be a finite number >= 0"),
    (SGD, None, dict(lr="x"), TypeError, "lr must be a real number"),
    (SGD, None, dict(momentum=-0.5), ValueError, "momentum must be"),
    (SGD, None, dict(momentum=math.inf), ValueError, "momentum must be"),
    (SGD, None, dict(dampening=-1), ValueError, "dampening must be"),
    (SGD, None, dict(dampening=math.nan), ValueError, "dampening must be"),
    (SGD, None, dict(weight_decay=-1e-4), ValueError, "weight_decay must be"),
    (AdamW, None, dict(weight_decay=math.nan), ValueError, "weight_decay must be"),
    (SGD, None, dict(nesterov=True), ValueError, "nesterov=True needs momentum > 0"),
    (SGD, None, dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError,
     "nesterov=True needs momentum > 0 and dampening = 0"),
    (SGD, None, dict(nesterov="yes"), TypeError, "nesterov must be True or False"),
    (Adam, None, dict(betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be in \[0, 1\)"),
    (Adam, None, dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
    (AdamW, None, dict(betas=(0.9, math.nan)), ValueError, r"betas\[1\] must be in"),
    (Adam, None, dict(betas=0.9), TypeError, "betas must be a pair"),
    (Adam, None, dict(betas=(0.9, 0.99, 0.999)), TypeError, "betas must be a pair"),
    (Adam, None, dict(eps=0.0), ValueError, "eps must be a finite number > 0"),
    (Adam, None, dict(eps=-1e-8), ValueError, "eps must be"),
    (AdamW, None, dict(eps=math.inf), ValueError, "eps must be"),
    (Adam, None, dict(amsgrad=2), TypeError, "amsgrad must be True or False"),
]


@pytest.mark.parametrize("cls, params, kwargs, error, match", BAD)
def test_bad_arguments_are_refused_naming_them(cls, params, kwargs, error, match):
    with pytest.raises(error, match=match):
        cls([Value(1.0)] if params is None else params(), **kwargs)


def test_a_value_whose_init_has_not_run_is_refused():
    bare = Value.__new__(Value)
    with pytest.raises(ValueError, match="parameter 0 is a Value whose __init__ has not run"):
        SGD([bare])
    bare.__init__(3.0, (Value(1.0), Value(2.0)), "op")  # would have become an interior node
    assert bare._op == "op"


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_bad_rates_change_nothing(cls):
    a = Value(1.0)
    opt = cls([a], lr=0.1)
    a.grad = 1.0
    for bad in (math.nan, -math.inf, -1.0):
        with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
            opt.step(bad)
        with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
            opt.lr = bad
    with pytest.raises(TypeError):
        opt.step("fast")
    with pytest.raises(AttributeError):
        del opt.lr
    assert a.data == 1.0 and opt.lr == 0.1 and opt.state_dict()["state"] == {}


def _trained(cls, **kwargs):
    params = [Value(0.5), Value(-1.5), Value(2.0)]
    opt = cls(params, **kwargs)
    for k in range(3):
        for p in params:
            p.grad = 0.1 * (k + 1) * p.data
        opt.step()
    return opt


def _corrupt(path, value):
    def change(state):
        *keys, last = path
        for key in keys:
            state = state[key]
        if value is _DELETE:
            del state[last]
        else:
            state[last] = value
    return change


_DELETE = object()
BAD_STATES = [
    (Adam, lambda s: s.pop("state"), ValueError, "missing \\['state'\\]"),
    (Adam, _corrupt(("extra",), 1), ValueError, "unknown \\['extra'\\]"),
    (Adam, _corrupt(("param_groups",), []), ValueError, "a list of one dict"),
    (Adam, _corrupt(("param_groups", 0, "lr"), -1.0), ValueError, "lr must be"),
    (Adam, _corrupt(("param_groups", 0, "betas"), (0.9, 1.0)), ValueError, r"betas\[1\]"),
    (Adam, _corrupt(("param_groups", 0, "maximize"), False), ValueError, "unknown \\['maximize'\\]"),
    (Adam, _corrupt(("param_groups", 0, "eps"), _DELETE), ValueError, "missing \\['eps'\\]"),
    (Adam, _corrupt(("param_groups", 0, "params"), [0, 1]), ValueError, "3 distinct ints"),
    (Adam, _corrupt(("param_groups", 0, "params"), [0, 1, 1]), ValueError, "3 distinct ints"),
    (Adam, _corrupt(("state", 2), _DELETE), ValueError, "an entry for each of the 3"),
    (Adam, _corrupt(("state", 9), {}), ValueError, "keys not in params"),
    (Adam, _corrupt(("state", 1, "exp_avg_sq"), -1.0), ValueError, "exp_avg_sq'\\] must be a finite number >= 0"),
    (Adam, _corrupt(("state", 1, "exp_avg"), math.nan), ValueError, "exp_avg'\\] must be a finite"),
    (Adam, _corrupt(("state", 1, "exp_avg"), "1.0"), TypeError, "must be a real number"),
    (Adam, _corrupt(("state", 2, "step"), 2.0), ValueError, "the same for every parameter"),
    (Adam, _corrupt(("state", 0, "step"), 0.5), ValueError, "a whole number >= 1"),
    (Adam, _corrupt(("state", 0, "max_exp_avg_sq"), 1.0), ValueError, "unknown \\['max_exp_avg_sq'\\]"),
    (Adam, _corrupt(("param_groups", 0, "amsgrad"), True), ValueError, "missing \\['max_exp_avg_sq'\\]"),
    (Adam, _corrupt(("state", 0), [1.0]), TypeError, "state\\[0\\] must be a dict"),
    (SGD, _corrupt(("param_groups", 0, "momentum"), 0.0), ValueError, "state must be empty"),
    (SGD, lambda s: s["param_groups"][0].update(nesterov=True, dampening=0.5), ValueError,
     "nesterov=True needs"),
    (SGD, _corrupt(("state", 0, "momentum_buffer"), math.inf), ValueError, "must be a finite"),
]


@pytest.mark.parametrize("cls, corrupt, error, match", BAD_STATES)
def test_a_bad_state_dict_is_refused_and_changes_nothing(cls, corrupt, error, match):
    opt = _trained(cls, **({"momentum": 0.9} if cls is SGD else {}))
    before, data = opt.state_dict(), [p.data for p in opt.params]
    bad = copy.deepcopy(before)
    corrupt(bad)
    with pytest.raises(error, match=match):
        opt.load_state_dict(bad)
    assert opt.state_dict() == before and [p.data for p in opt.params] == data
    opt.load_state_dict(before)  # the good one still loads
    with pytest.raises(TypeError, match="takes a dict"):
        opt.load_state_dict([before])


def test_a_state_dict_from_another_optimizer_is_refused():
    with pytest.raises(ValueError, match="missing"):
        Adam([Value(1.0)]).load_state_dict(SGD([Value(1.0)]).state_dict())
    adamw = AdamW([Value(1.0)])
    with pytest.raises(ValueError, match="must be 1 distinct ints"):
        adamw.load_state_dict(_trained(AdamW).state_dict())  # 3 parameters, not 1


@pytest.mark.parametrize("make, error, match", [
    (lambda opt: LinearLR(opt, start_factor=0.0), ValueError, "start_factor"),
    (lambda opt: LinearLR(opt, end_factor=1.5), ValueError, "end_factor"),
    (lambda opt: LinearLR(opt, total_iters=0), ValueError, "total_iters"),
    (lambda opt: CosineAnnealingLR(opt, 0), ValueError, "T_max"),
    (lambda opt: CosineAnnealingLR(opt, 10, eta_min=-1.0), ValueError, "eta_min"),
    (lambda opt: LambdaLR(opt, 0.5), TypeError, "callable"),
    (lambda opt: LambdaLR(opt, [abs, abs]), ValueError, "1 lr_lambda"),
    (lambda opt: LinearLR(opt, last_epoch=4), ValueError, "last_epoch"),
    (lambda opt: LinearLR(object()), TypeError, "not an optimizer"),
    (lambda opt: LambdaLR(opt, lambda epoch: -1.0), ValueError, "lr must be a finite number"),
])
def test_bad_schedules_are_refused_leaving_the_rate(make, error, match):
    opt = SGD([Value(1.0)], lr=0.5)
    with pytest.raises(error, match=match):
        make(opt)
    assert opt.lr == 0.5


def test_a_schedule_round_trips_its_state_and_refuses_a_bad_one():
    opt = SGD([Value(1.0)], lr=0.5)
    schedule = CosineAnnealingLR(opt, 10)
    for _ in range(4):
        schedule.step()
    saved = schedule.state_dict()
    other = CosineAnnealingLR(SGD([Value(1.0)], lr=0.5), 10)
    other.load_state_dict(saved)
    assert other.state_dict() == saved
    for bad in [{}, {**saved, "last_epoch": -3}, {**saved, "base_lrs": [math.nan]},
                {**saved, "extra": 1}]:
        with pytest.raises(ValueError):
            other.load_state_dict(bad)
        assert other.state_dict() == saved

    class Factor:
        def __init__(self):
            self.rate = 0.5

        def __call__(self, epoch):
            return self.rate ** epoch

    lam = LambdaLR(SGD([Value(1.0)]), Factor())
    saved = lam.state_dict()
    assert saved["lr_lambdas"] == [{"rate": 0.5}]
    again = LambdaLR(SGD([Value(1.0)]), Factor())
    again.lr_lambdas[0].rate = 0.1
    again.load_state_dict(saved)
    assert again.lr_lambdas[0].rate == 0.5 and LambdaLR(opt, abs).state_dict()["lr_lambdas"] == [None]


# -- hostile habits ---------------------------------------------------------------------------

@pytest.mark.parametrize("cls", OPTIMIZERS + [Optimizer])
def test_methods_refuse_a_self_of_another_class_and_init_runs_once(cls):
    for call in (lambda: cls.step(3), lambda: cls.zero_grad(None),
                 lambda: cls.state_dict(Value(1.0)), lambda: cls.load_state_dict(1.0, {}),
                 lambda: cls.__len__("x"), lambda: cls.__reduce__([])):
        with pytest.raises(TypeError):
            call()
    if cls is Optimizer:
        with pytest.raises(TypeError, match="base of SGD, Adam and AdamW"):
            Optimizer()
        return
    with pytest.raises(TypeError):
        cls.__init__(1.0, [])
    opt = cls([Value(1.0)])
    with pytest.raises(RuntimeError, match="only once"):
        opt.__init__([Value(2.0)])
    assert len(opt) == 1


def test_adam_init_on_an_adamw_keeps_it_an_adamw():
    opt = AdamW.__new__(AdamW)
    Adam.__init__(opt, [Value(1.0)], weight_decay=0.5)
    opt.params[0].grad = 0.0
    opt.step()
    assert opt.params[0].data == 1.0 * (1 - 1e-3 * 0.5)  # decoupled decay, no gradient


class Hostile(float):
    """A number whose float() first runs `action` (engine operations, the optimizer's own
    methods) as a user's class may."""

    def __new__(cls, value, action):
        self = super().__new__(cls, value)
        self.action = action
        return self

    def __float__(self):
        self.action()
        return float.__float__(self)


def _engine_work():
    a = Value(2.0)
    ((a * 3.0).tanh() + a.exp()).backward()
    return a.grad


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_numbers_that_run_engine_code_and_the_optimizer_itself_while_read(cls):
    a = Value(1.0)
    box = []

    def meddle():
        _engine_work()
        if box:
            opt = box[0]
            opt.step()
            assert len(opt) == len(opt.params) and repr(opt)
            opt.load_state_dict(opt.state_dict())
            with pytest.raises(RuntimeError, match="only once"):
                opt.__init__([a])

    def params():
        box.append(new)  # the optimizer being set up, its parameters not yet taken
        meddle()
        yield a
        meddle()

    numbers = {SGD: dict(momentum=0.5, dampening=0.25, weight_decay=0.1),
               Adam: dict(betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1),
               AdamW: dict(betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)}[cls]

    def hostile(x):
        return tuple(map(hostile, x)) if isinstance(x, tuple) else Hostile(x, meddle)

    new = cls.__new__(cls)
    new.__init__(params(), lr=Hostile(0.1, meddle),
                 **{key: hostile(value) for key, value in numbers.items()})
    assert new.params == [a] and new.lr == 0.1
    a.grad = 1.0
    new.step(Hostile(0.1, meddle))  # the inner step runs first: two steps, each whole
    reference = cls([Value(1.0)], lr=0.1, **numbers)
    reference.params[0].grad = 1.0
    reference.step()
    reference.step()
    assert a.data == reference.params[0].data
    assert new.state_dict()["state"] == reference.state_dict()["state"]


def test_a_state_dict_whose_numbers_reenter_the_optimizer_loads_as_given():
    opt = _trained(Adam)
    saved = opt.state_dict()
    for p in opt.params:
        p.grad = 0.3
    calls = []

    def reenter():
        calls.append(1)
        opt.step()  # meanwhile: a step, a load of another state, engine work
        opt.load_state_dict(_trained(Adam, amsgrad=True).state_dict())
        _engine_work()

    hostile = copy.deepcopy(saved)
    hostile["state"][1]["exp_avg"] = Hostile(saved["state"][1]["exp_avg"], reenter)
    hostile["param_groups"][0]["lr"] = Hostile(saved["param_groups"][0]["lr"], reenter)
    opt.load_state_dict(hostile)
    assert calls == [1, 1] and opt.state_dict() == saved


def test_a_state_dict_that_fails_after_reentering_still_changes_nothing():
    opt = _trained(Adam)
    saved = opt.state_dict()
    hostile = copy.deepcopy(saved)

    def fail():
        raise RuntimeError("from __float__")

    hostile["state"][2]["exp_avg_sq"] = Hostile(1.0, fail)
    with pytest.raises(RuntimeError, match="from __float__"):
        opt.load_state_dict(hostile)
    assert opt.state_dict() == saved


def test_a_state_dict_taken_while_another_thread_steps_is_the_state_of_one_step():
    opt = _trained(Adam, amsgrad=True)
    reference = _trained(Adam, amsgrad=True)
    for p in opt.params + reference.params:
        p.grad = 0.25
    states = {}
    for _ in range(1000):
        state = reference.state_dict()
        states[state["state"][0]["step"]] = state
        reference.step()

    def work(role):
        if role == "step":
            for _ in range(999):
                opt.step()
            return None
        return [opt.state_dict() for _ in range(300)]

    _, seen = run_in_threads([("step",), ("read",)], task=work)
    for state in seen:
        assert state == states[state["state"][0]["step"]]


def test_a_state_dict_taken_while_garbage_collections_load_others_is_one_of_them():
    """A garbage collection may run Python code at any allocation, state_dict's own among
    them: here a collector callback loads one state or another, with other hyperparameters
    and another number of arrays, while state_dict builds its dicts from the one before."""
    import gc
    opt = _trained(Adam, amsgrad=True)
    one, other = opt.state_dict(), _trained(Adam, lr=0.5, betas=(0.5, 0.6)).state_dict()
    loads = []

    def callback(phase, info):
        if phase == "start" and len(loads) < 300:
            loads.append(1)
            opt.load_state_dict(other if len(loads) % 2 else one)

    threshold = gc.get_threshold()
    gc.callbacks.append(callback)
    gc.set_threshold(1)  # a collection at almost every allocation
    try:
        seen = [opt.state_dict() for _ in range(30)]
    finally:
        gc.callbacks.remove(callback)
        gc.set_threshold(*threshold)
    # 3.12 and later collect between bytecodes, never inside state_dict's C: there the
    # collections fall between the calls, and the check is that each call saw one state
    if sys.version_info < (3, 12):
        assert len(loads) > 30 and one in seen and other in seen
    assert loads and all(state in (one, other) for state in seen)


def test_params_ids_that_change_between_reads_are_read_once():
    opt = _trained(SGD, momentum=0.9)
    saved = opt.state_dict()

    class Shifty(list):  # each iteration one id fewer: a second read would be short
        reads = 0

        def __iter__(self):
            Shifty.reads += 1
            return iter(list.__iter__(self) if Shifty.reads == 1 else [0])

    saved["param_groups"][0]["params"] = Shifty([0, 1, 2])
    opt.load_state_dict(saved)
    assert Shifty.reads == 1 and opt.state_dict()["state"] == saved["state"]


def test_a_parameter_is_read_in_c_never_through_python():
    class Loud(Value):
        def __float__(self):
            raise AssertionError("the optimizer called float() on a parameter")

    params = [Loud(1.0), Value(2.0)]
    for cls in OPTIMIZERS:
        opt = cls(params, lr=0.1)
        for p in params:
            p.grad = 1.0
        opt.step()
        opt.load_state_dict(opt.state_dict())
        opt.zero_grad()
    assert params[0].data < 1.0


@pytest.mark.parametrize("cls", OPTIMIZERS)
def test_two_threads_stepping_take_whole_steps(cls):
    """Each step runs in C holding the GIL: two threads' steps interleave whole, so the
    parameters are those of one thread taking all the steps (the grads stay fixed)."""
    def make():
        params = [Value(0.1 * i - 1.0) for i in range(50)]
        for i, p in enumerate(params):
            p.grad = math.sin(i)
        return cls(params, lr=0.01)

    shared, alone = make(), make()
    run_in_threads([(shared,), (shared,)], task=lambda opt: [opt.step() for _ in range(500)])
    for _ in range(1000):
        alone.step()
    assert [p.data for p in shared.params] == [p.data for p in alone.params]
    assert shared.state_dict() == alone.state_dict()
