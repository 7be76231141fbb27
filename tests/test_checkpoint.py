"""Checkpoints: a killed run resumes to the same final metrics; bad checkpoints fail loudly."""

import functools
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vpl_jax.runtime.checkpoint import Checkpointer, CheckpointError, _is_key, run_chunked


def _init():
    return {"x": jnp.zeros(3), "key": jax.random.PRNGKey(0), "step": jnp.int32(0)}


@functools.partial(jax.jit, static_argnums=1)
def _chunk(state, n):
    def update(state, _):
        key, sub = jax.random.split(state["key"])
        x = state["x"] + jax.random.normal(sub, (3,))
        return {"x": x, "key": key, "step": state["step"] + 1}, jnp.sum(x)

    return jax.lax.scan(update, state, None, length=n)


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_identical_metrics(tmp_path):
    reference, ref_history = run_chunked(_init, _chunk, total=10, chunk_size=2)

    calls = {"n": 0}

    def dying_chunk(state, n):
        calls["n"] += 1
        if calls["n"] == 4:  # dies in the 4th chunk, after the checkpoint at update 6
            raise Interrupt
        return _chunk(state, n)

    config = {"lr": 0.1}
    with pytest.raises(Interrupt):
        run_chunked(_init, dying_chunk, 10, 2, Checkpointer(tmp_path, config, every=2))
    resumed_from = []

    def counting_chunk(state, n):
        if not isinstance(state["step"], jax.core.Tracer):  # not the abstract structure trace
            resumed_from.append(int(state["step"]))
        return _chunk(state, n)

    state, history = run_chunked(
        _init, counting_chunk, 10, 2, Checkpointer(tmp_path, config, every=2)
    )
    assert resumed_from == [6, 8]  # only the 2 missing chunks ran
    np.testing.assert_array_equal(state["x"], reference["x"])
    np.testing.assert_array_equal(history, ref_history)
    assert history.shape == (10,)


def test_checkpoint_of_another_config_is_refused(tmp_path):
    run_chunked(_init, _chunk, 4, 2, Checkpointer(tmp_path, {"lr": 0.1}, every=2))
    with pytest.raises(CheckpointError, match="different configuration"):
        run_chunked(_init, _chunk, 4, 2, Checkpointer(tmp_path, {"lr": 0.2}, every=2))


def _steps(folder):
    return sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def test_a_corrupt_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path):
    _, reference = run_chunked(_init, _chunk, 6, 2)
    calls = {"n": 0}

    def dying_chunk(state, n):
        calls["n"] += 1
        if calls["n"] == 3:  # after the checkpoints at updates 2 and 4
            raise Interrupt
        return _chunk(state, n)

    with pytest.raises(Interrupt):
        run_chunked(_init, dying_chunk, 6, 2, Checkpointer(tmp_path, {}, every=2))
    shutil.rmtree(_steps(tmp_path)[-1] / "state")  # step 4 damaged; step 2 intact
    with pytest.warns(UserWarning, match="resumed from checkpoint step 2, the newest intact one"):
        _, history = run_chunked(_init, _chunk, 6, 2, Checkpointer(tmp_path, {}, every=2))
    np.testing.assert_array_equal(history, reference)


def test_corrupt_checkpoints_with_no_intact_step_are_an_error_not_a_restart(tmp_path):
    run_chunked(_init, _chunk, 4, 2, Checkpointer(tmp_path, {}, every=2))
    for step in _steps(tmp_path):
        shutil.rmtree(step / "state")
    with pytest.raises(CheckpointError, match="delete the folder"):
        run_chunked(_init, _chunk, 4, 2, Checkpointer(tmp_path, {}, every=2))


def test_mismatched_state_is_an_error(tmp_path):
    run_chunked(_init, _chunk, 4, 2, Checkpointer(tmp_path, {}, every=2))

    def bigger():
        return {**_init(), "x": jnp.zeros(5)}

    with pytest.raises(CheckpointError, match="does not match"):
        run_chunked(bigger, _chunk, 4, 2, Checkpointer(tmp_path, {}, every=2))


_SCRIPT = textwrap.dedent(
    """
    import sys, time, jax, jax.numpy as jnp, numpy as np
    sys.path.insert(0, {tests!r})
    from test_checkpoint import _init, _chunk
    from vpl_jax.runtime.checkpoint import Checkpointer, run_chunked

    def slow_chunk(state, n):
        time.sleep(float(sys.argv[2]))
        return _chunk(state, n)

    state, history = run_chunked(_init, slow_chunk, 12, 2, Checkpointer(sys.argv[1], {{}}, every=2))
    np.save(sys.argv[1] + "/final.npy", history)
    """
)


def test_killed_process_resumes_to_identical_metrics(tmp_path):
    """A real SIGKILL mid-run (possibly mid-save), then a resume, equals an uninterrupted run."""
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT.format(tests=os.path.dirname(__file__)))
    env = {**os.environ, "VPL_JAX_PROGRESS": "0"}
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt), "0.5"], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not any(
        p.name.isdigit() and int(p.name) >= 4 for p in ckpt.glob("*")
    ):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (ckpt / "final.npy").exists()
    subprocess.run([sys.executable, str(script), str(ckpt), "0"], env=env, check=True)
    _, reference = run_chunked(_init, _chunk, 12, 2)
    np.testing.assert_array_equal(np.load(ckpt / "final.npy"), reference)


@pytest.mark.parametrize("method", ["oracle", "btl", "vpl", "vpl_spo"])
@pytest.mark.slow
def test_real_ppo_states_of_every_method_save_and_resume_identically(
    method, navigation, nav_dataset, tmp_path
):
    """The PPO state the pipeline checkpoints, for each kind of method: the oracle (conditioned
    on theta), an unconditioned reward (BTL: an empty latent, f32[..., 0]), a latent reward
    (VPL) and a reference-scaled one (VPL-SPO: reference rewards in the episode's info); PPO
    without a rollout hook has an empty ``hook_state``. Orbax refuses zero-size
    arrays, so saving these crashed at the first checkpoint."""
    from vpl_jax import policies as P
    from vpl_jax import rewards as R
    from vpl_jax.pipeline import PolicyTrainer, policy_inputs

    ppo = P.PPOConfig(
        total_timesteps=6 * 16 * 10, num_envs=16, num_steps=10, num_minibatches=2,
        update_epochs=1, hidden_sizes=(16,), center_rewards=True,
    )  # fmt: skip
    vpl = R.VPL(decoder_hidden=(16,))
    model = {"oracle": None, "btl": R.BTL(hidden=(16,)), "vpl": vpl, "vpl_spo": vpl}[method]
    params = references = None
    if model is not None:
        pairs = R.user_pairs(nav_dataset, "all", model.inputs)
        params = model.init(jax.random.PRNGKey(1), pairs.batch(jnp.arange(4)))
        references = R.reference_inputs(jax.random.PRNGKey(3), pairs.bank, 8)
    inputs = policy_inputs(method, model, params, nav_dataset, references)
    inputs = jax.tree.map(lambda x: x[None], inputs)
    keys = jax.random.PRNGKey(2)[None]
    trainer = PolicyTrainer(navigation, method, model, ppo, chunk_updates=2)
    reference, ref_history = trainer.train(keys, inputs)

    chunk, calls = trainer._chunk, {"n": 0}

    def dying(states, inp, n):
        calls["n"] += 1
        if calls["n"] == 3:  # after the checkpoint at update 4
            raise Interrupt
        return chunk(states, inp, n)

    trainer._chunk = dying
    with pytest.raises(Interrupt):
        trainer.train(keys, inputs, checkpointer=Checkpointer(tmp_path, {"m": method}, every=2))
    trainer._chunk = chunk
    state, history = trainer.train(
        keys, inputs, checkpointer=Checkpointer(tmp_path, {"m": method}, every=2)
    )
    jax.tree.map(np.testing.assert_array_equal, history, ref_history)
    raw = functools.partial(jax.tree.map, lambda x: jax.random.key_data(x) if _is_key(x) else x)
    jax.tree.map(np.testing.assert_array_equal, raw(state), raw(reference))


# --- experiments interrupted mid-training and run again with the same command --------------------
@pytest.mark.slow  # the shared navigation dataset, and three tiny reward trainings of two models
def test_reward_accuracy_interrupted_mid_training_resumes_to_identical_metrics(
    load_experiment, nav_dataset, monkeypatch, tmp_path
):
    """--reward-checkpoint-every: a run stopped mid-training of its second model, run again with
    the same command, restores the first model whole and the second from its last checkpoint,
    and writes the metrics.json of an uninterrupted run. (Before, reward_accuracy had no
    checkpoints: a stopped run started over.)"""
    from vpl_jax import harness

    experiment = load_experiment("reward_accuracy")
    monkeypatch.setattr(harness, "task_dataset", lambda config, task, key: nav_dataset)
    argv = [
        "--tasks", "navigation", "--methods", "btl", "linear_bayes", "--num-seeds", "2",
        "--train.num-epochs", "6", "--train.users-per-batch", "4", "--sizes.hidden", "8",
        "--reward-chunk-epochs", "2", "--reward-checkpoint-every", "2",
        "--results-dir", str(tmp_path),
    ]  # fmt: skip

    def run(name):
        harness.run_experiment(
            "reward_accuracy", experiment.Config, experiment.PRESETS, experiment.main,
            [*argv, "--run-name", name],
        )  # fmt: skip
        return (tmp_path / "reward_accuracy" / name / "metrics.json").read_bytes()

    reference = run("uninterrupted")
    save, restore, saves, restored = Checkpointer.save, Checkpointer.restore, [], []

    def save_then_die(self, step, state, history):
        save(self, step, state, history)
        saves.append(step)
        if len(saves) == 5:  # btl saved at 2, 4, 6; linear_bayes at 2, 4
            raise Interrupt

    def restore_and_tell(self, *args):
        out = restore(self, *args)
        restored.append(None if out is None else out[1])
        return out

    monkeypatch.setattr(Checkpointer, "save", save_then_die)
    with pytest.raises(Interrupt):
        run("stopped")
    assert not (tmp_path / "reward_accuracy" / "stopped" / "metrics.json").exists()
    monkeypatch.setattr(Checkpointer, "save", save)
    monkeypatch.setattr(Checkpointer, "restore", restore_and_tell)
    assert run("stopped") == reference
    assert restored == [6, 4]  # btl restored whole, linear_bayes from its checkpoint at 4


#: Runs ``experiments/<argv[1]>.py`` with the command-line arguments ``argv[2:]``, as the script
#: does, and reports on stderr each checkpoint step it resumed from; ``VPL_JAX_TEST_PAUSE``
#: seconds of sleep before each PPO chunk give a test time to kill it mid-PPO.
_EXPERIMENT = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {experiments!r})
    import importlib
    from vpl_jax import harness, pipeline
    from vpl_jax.runtime.checkpoint import Checkpointer

    pause = float(os.environ.get("VPL_JAX_TEST_PAUSE", "0"))
    init, restore = pipeline.PolicyTrainer.__init__, Checkpointer.restore

    def slowed(self, *args, **kwargs):
        init(self, *args, **kwargs)
        chunk = self._chunk
        self._chunk = lambda *a: (time.sleep(pause), chunk(*a))[1]

    def reporting(self, *args):
        out = restore(self, *args)
        if out is not None:
            print(f"resumed {{self.directory.name}} at {{out[1]}}", file=sys.stderr)
        return out

    pipeline.PolicyTrainer.__init__, Checkpointer.restore = slowed, reporting
    experiment = importlib.import_module(sys.argv[1])
    harness.run_experiment(
        sys.argv[1], experiment.Config, experiment.PRESETS, experiment.main, sys.argv[2:]
    )
    """
)


@pytest.mark.slow  # three tiny runs of misspecification in subprocesses: about 4 min on 2 cores
def test_an_experiment_killed_mid_ppo_resumes_with_the_same_command_to_identical_metrics(
    tmp_path, subprocess_cache
):
    """misspecification (its oracle's PPO checkpointed every 2 of 20 updates) is SIGKILLed
    mid-PPO after a checkpoint, then run again with the same command: it resumes from that
    checkpoint and writes the metrics.json of an uninterrupted run, byte for byte. The resumed
    run reads the programs the uninterrupted run compiled (never the killed run's cache, which
    a kill can leave with half a file)."""
    experiments = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments")
    script = tmp_path / "run.py"
    script.write_text(_EXPERIMENT.format(experiments=experiments))
    argv = [
        "--kinds", "beta", "--beta-sizes", "1", "--methods", "linear_bayes", "--policy-methods",
        "--policy-kinds", "beta", "--no-correct", "--data.num-users", "16",
        "--data.context-size", "4", "--data.heldout-size", "8", "--data.pool-size", "256",
        "--data.num-episodes", "32", "--reward-train.num-epochs", "2",
        "--reward-train.users-per-batch", "4", "--ppo.total-timesteps", "12800",
        "--ppo.num-envs", "16", "--ppo.num-minibatches", "2", "--ppo.update-epochs", "1",
        "--ppo.hidden-sizes", "16", "--num-eval-episodes", "1", "--chunk-updates", "2",
        "--checkpoint-every", "2", "--results-dir", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "VPL_JAX_PROGRESS": "0"}

    def command(name):
        return [sys.executable, str(script), "misspecification", *argv, "--run-name", name]

    log = (tmp_path / "uninterrupted.log").open("w")  # a file: a full pipe would block it
    cache = subprocess_cache("killed_mid_ppo")
    reference = subprocess.Popen(command("uninterrupted"), env={**env, **cache}, stderr=log)
    killed = subprocess.Popen(command("killed"), env={**env, "VPL_JAX_TEST_PAUSE": "1"})
    steps = tmp_path / "misspecification" / "killed" / "checkpoints" / "oracle"
    deadline = time.time() + 480
    while (
        time.time() < deadline
        and killed.poll() is None
        and not any(p.name.isdigit() and int(p.name) >= 4 for p in steps.glob("*"))
    ):
        time.sleep(0.1)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (steps.parent.parent / "metrics.json").exists(), "killed before PPO ended"
    code = reference.wait()
    log.close()
    assert code == 0, (tmp_path / "uninterrupted.log").read_text()[-3000:]
    resumed = subprocess.run(
        command("killed"), env={**env, **cache}, stderr=subprocess.PIPE, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    step = [int(line.split()[-1]) for line in resumed.stderr.splitlines()
            if line.startswith("resumed oracle at")]  # fmt: skip
    assert len(step) == 1 and 4 <= step[0] < 20, resumed.stderr[-3000:]
    folder = tmp_path / "misspecification"
    written = (folder / "killed" / "metrics.json").read_bytes()
    assert written == (folder / "uninterrupted" / "metrics.json").read_bytes()
