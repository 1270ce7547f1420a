"""The proxy's pre-trained tiny foundations: built by tools/make_tiny_pretrained.py --foundations, cached,
in the release layouts, installed over random stand-ins."""
import os

import numpy as np
import pytest
import torch

import make_tiny_pretrained as M
import tiny_foundations as TF
from projects.desa2va.datasets.synthetic import Shape

SHORT = dict(sam2_image_iters=2, sam2_clip_iters=1, vision_iters=2, mllm_iters=2, eval_images=2, eval_clips=1)


def test_questions_answer_what_the_scene_holds():
    shapes = [Shape("circle", "red", 20.0, 20.0, 10.0), Shape("square", "blue", 100.0, 110.0, 12.0),
              Shape("circle", "green", 64.0, 64.0, 9.0)]
    q = TF.questions(shapes, np.random.default_rng(0))
    assert q["colour"] == [("What colour is the square?", "blue.")]  # the circle is not unique: not asked
    assert sorted(q["shape"]) == sorted([("What shape is the red one?", "circle."),
                                         ("What shape is the blue one?", "square."),
                                         ("What shape is the green one?", "circle.")])
    assert q["count"] == [("How many shapes are there?", "There are 3 shapes.")]
    assert dict(q["position"])["Where is the red circle?"] == "It is at the top left."
    assert dict(q["position"])["Where is the green circle?"] == "It is in the middle."
    assert dict(q["position"])["Where is the blue square?"] == "It is at the bottom right."
    assert q["caption"] == [("Describe the image.", "A red circle, a green circle and a blue square.")]


@pytest.fixture(scope="module")
def short_foundations(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("foundations"))
    M.write_internvl(out + "_random", 0, M.PROXY_PATCH)
    M.write_sam2(out + "_random", 0, M.SAM2_PROXY_CONFIG, M.SAM2_PROXY_FILE)
    record = M.ensure_foundations(out, 0, **SHORT)
    return out, record


def test_foundations_are_trained_copies_in_the_release_layout(short_foundations):
    from projects.desa2va.models.checkpoint_io import read_safetensors_folder, read_torch_checkpoint

    out, record = short_foundations
    assert record["settings"] == {**M.FOUNDATION_DEFAULTS, **SHORT} and record["code"] == M.code_hash()
    mllm, rand = (read_safetensors_folder(os.path.join(d, M.MLLM_DIR)) for d in (out, out + "_random"))
    assert set(mllm) == set(rand) and all(mllm[k].shape == rand[k].shape for k in rand)  # no [SEG] rows
    assert any(not torch.equal(mllm[k], rand[k]) for k in rand)
    with open(os.path.join(out, M.MLLM_DIR, "vocab.json")) as f, \
            open(os.path.join(out + "_random", M.MLLM_DIR, "vocab.json")) as g:
        assert f.read() == g.read()
    sam, sam_rand = (read_torch_checkpoint(os.path.join(d, M.SAM2_PROXY_FILE), key="model")
                     for d in (out, out + "_random"))
    assert set(sam) == set(sam_rand)
    changed = {k.split(".")[0] for k in sam if not torch.equal(sam[k], sam_rand[k])}
    assert {"image_encoder", "sam_mask_decoder", "memory_attention", "memory_encoder"} <= changed
    for key in ("iou_point_uniform", "iou_reprompt", "propagation_jf", "qa_colour", "qa_shape"):
        assert key in record["figures"]


def test_ensure_foundations_reuses_a_current_cache_and_retrains_otherwise(short_foundations, monkeypatch):
    out, record = short_foundations
    calls = []
    monkeypatch.setattr(M, "write_foundations", lambda *a: calls.append(a) or {"figures": {}})
    assert M.ensure_foundations(out, 0, **SHORT) == record and not calls
    M.ensure_foundations(out, 0, **dict(SHORT, mllm_iters=3))
    M.ensure_foundations(out, 1, **SHORT)
    assert [c[1] for c in calls] == [0, 1] and calls[0][2]["mllm_iters"] == 3


def test_install_replaces_random_stand_ins_once(short_foundations, tmp_path):
    out, record = short_foundations
    dst = str(tmp_path / "tiny")
    M.main(["--out", dst])  # random stand-ins, as tests and older checkouts have them
    assert M.install_foundations(out, dst) == record == M.read_record(dst)
    with open(os.path.join(out, M.MLLM_DIR, "model.safetensors"), "rb") as f, \
            open(os.path.join(dst, M.MLLM_DIR, "model.safetensors"), "rb") as g:
        assert f.read() == g.read()
    stamp = os.path.getmtime(os.path.join(dst, M.SAM2_PROXY_FILE))
    M.install_foundations(out, dst)
    assert os.path.getmtime(os.path.join(dst, M.SAM2_PROXY_FILE)) == stamp  # current: not copied again
    with pytest.raises(FileNotFoundError, match="--foundations"):
        M.install_foundations(str(tmp_path / "nothing"), dst)


def test_localisation_warm_up_rows_and_step():
    from projects.desa2va.models.grounding import SAM2Grounding

    rng = np.random.default_rng(0)
    pts, discs = TF.position_rows(rng, 5)
    for (x, y), d in zip(pts, discs):
        assert d[int(y), int(x)]  # the target is around its point ...
        r = np.sqrt(d.sum() / np.pi)
        assert 9 <= r <= 26  # ... with the shapes' radii
        ys, xs = np.nonzero(d)
        assert abs(xs.mean() - x) < 1.5 and abs(ys.mean() - y) < 1.5
    torch.manual_seed(0)
    m = SAM2Grounding(M.SAM2_PROXY_CONFIG, None).sam2_model
    warm = TF.sam2_image_step(m, np.random.default_rng(1), 2, localisation=2)
    full = TF.sam2_image_step(m, np.random.default_rng(1), 2)
    assert {"loss_focal_loc", "loss_dice_loc"} <= set(warm) and not any(k.endswith("_r2") for k in warm)
    assert not any(k.endswith("_loc") for k in full) and "loss_focal_r2" in full


def test_object_patches_are_the_ones_a_mask_covers():
    mask = np.zeros((16, 16), bool)
    mask[:8, :8] = True  # all of patch 0
    mask[:2, 8:12] = True  # 8 of patch 1's 64 pixels: not a quarter
    mask[12:16, 8:16] = True  # half of patch 3
    assert TF._object_patches(mask, 8).tolist() == [True, False, False, True]
    small = np.zeros((16, 16), bool)
    small[9:11, 2:4] = True  # 4 pixels of patch 2: none covered by a quarter, so its best one
    assert TF._object_patches(small, 8).tolist() == [False, False, True, False]


def test_vision_pre_training_trains_the_vit_alone_then_questions_keep_it(tmp_path):
    from projects.desa2va.models.mllm import InternVLMLLM

    folder = M.write_internvl(str(tmp_path), 0, M.PROXY_PATCH)
    mllm = InternVLMLLM(folder, freeze_vision=False, freeze_llm=False, freeze_projector=False)
    assert mllm.geometry.num_image_token == 64

    def parts():
        return {n: {k: v.clone() for k, v in getattr(mllm, n).state_dict().items()}
                for n in ("vision_model", "mlp1", "language_model")}

    def changed(a, b):
        return {n for n in a if any(not torch.equal(a[n][k], b[n][k]) for k in a[n])}
    before = parts()
    TF.pretrain_vision(mllm, 2, 0, batch=2)
    after_vision = parts()
    assert changed(before, after_vision) == {"vision_model"}
    TF.pretrain_mllm(mllm, 2, 0, batch=2, train_vision=False)
    assert changed(after_vision, parts()) == {"mlp1", "language_model"}
    assert all(p.requires_grad for p in mllm.vision_model.parameters())


def test_cell_labels_name_the_shape_under_each_cell_centre():
    a, b = np.zeros((128, 128), bool), np.zeros((128, 128), bool)
    a[0:20, 0:20] = True      # covers the centre (8, 8) of cell (0, 0) at 16 px cells
    b[100:128, 60:80] = True  # covers the centres (y 104 / 120, x 72) of cells (6, 4) and (7, 4)
    lab = TF.cell_labels([a, b], [Shape("star", "yellow", 0, 0, 1), Shape("square", "green", 0, 0, 1)], 8)
    assert lab.shape == (8, 8, 2)
    assert lab[0, 0].tolist() == [4, 4]  # yellow is the 4th colour, star the 4th shape (1-based)
    assert lab[6, 4].tolist() == lab[7, 4].tolist() == [2, 2]
    assert int((lab.sum(-1) > 0).sum()) == 3  # every other cell is background


def test_sam2_encoder_pre_training_trains_the_image_encoder_alone():
    from projects.desa2va.models.grounding import SAM2Grounding

    torch.manual_seed(0)
    m = SAM2Grounding(M.SAM2_PROXY_CONFIG, None).sam2_model
    before = {k: v.clone() for k, v in m.state_dict().items()}
    TF.pretrain_sam2(m, 0, 0, 0, batch=2, encoder_iters=2)
    changed = {k.split(".")[0] for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"image_encoder"}
    probe = TF.SemanticProbe(m.image_encoder.neck.d_model)
    losses = TF.sam2_image_step(m, np.random.default_rng(0), 2, probe=probe, probe_weight=0.5)
    assert {"loss_sem_colour", "loss_sem_shape"} <= set(losses)
    plain = TF.sam2_image_step(m, np.random.default_rng(0), 2)
    assert not any(k.startswith("loss_sem") for k in plain)


def test_ensure_tiny_installs_the_committed_foundations_and_keeps_random_stand_ins(short_foundations, tmp_path,
                                                                                   monkeypatch):
    out, record = short_foundations
    monkeypatch.setattr(M, "ASSETS", out)
    empty = str(tmp_path / "empty")
    assert M.ensure_tiny(empty) == record == M.read_record(empty)
    random_dir = str(tmp_path / "random")
    M.main(["--out", random_dir])  # written on purpose (stand_ins.json): kept
    assert M.ensure_tiny(random_dir) is None and M.read_record(random_dir) is None
    os.remove(os.path.join(random_dir, M.STAND_INS_FILE))  # an older checkout's unmarked random folder: replaced
    assert M.ensure_tiny(random_dir) == record
    assert not os.path.exists(os.path.join(random_dir, M.STAND_INS_FILE))
    M.main(["--out", random_dir])  # the CLI's --install replaces stand-ins written on purpose too
    M.main(["--out", random_dir, "--install"])
    assert M.read_record(random_dir) == record and not os.path.exists(os.path.join(random_dir, M.STAND_INS_FILE))
    with pytest.raises(SystemExit):
        M.main(["--out", random_dir, "--install", "--foundations"])
    monkeypatch.setattr(M, "ASSETS", str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="restore them from git"):
        M.ensure_tiny(empty)


def test_committed_foundations_load_strictly_and_do_what_they_claim():
    """assets/foundations (what the quickstart starts from) through the loaders of real checkpoints, and
    their recorded targets on fresh held-out scenes (a smaller sample than the recorded figures)."""
    from projects.desa2va.models.grounding.sam2_grounding import SAM2Grounding
    from projects.desa2va.models.mllm import InternVLMLLM

    record = M.read_record(M.ASSETS)
    assert record is not None and set(record["figures"]) >= {"iou_point_uniform", "propagation_jf", "qa_colour"}
    grounding = SAM2Grounding(M.SAM2_PROXY_CONFIG, os.path.join(M.ASSETS, M.SAM2_PROXY_FILE))  # strict
    got = TF.evaluate_sam2(grounding, num_images=12, num_clips=4, seed=7)
    assert got["iou_point_uniform"] >= 0.8 and got["iou_reprompt"] >= got["iou_point_uniform"] - 0.02
    assert got["propagation_jf"] >= 0.8
    mllm = InternVLMLLM(os.path.join(M.ASSETS, M.MLLM_DIR))  # strict
    assert TF.evaluate_mllm(mllm, num_images=20, seed=7)["qa_shape"] >= 0.8
