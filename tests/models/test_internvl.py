"""InternVL2.5 wrapper: grounding tokens, image-token splicing, [SEG] states in training and generation, LoRA."""
import pytest
import torch

from conftest import ScriptedHead, image_prompt
from projects.desa2va.common import special_tokens as st
from projects.desa2va.models.mllm import ImageTokenMismatchError, pixel_shuffle


def test_pixel_shuffle_groups_2x2_neighbourhoods():
    n, h, w, c = 1, 4, 4, 3
    x = torch.arange(n * h * w * c, dtype=torch.float32).reshape(n, h, w, c)
    y = pixel_shuffle(x, 0.5, "v2")
    assert y.shape == (1, 2, 2, 12)
    for i in range(2):
        for j in range(2):
            expected = torch.cat([x[0, 2 * i, 2 * j], x[0, 2 * i, 2 * j + 1],
                                  x[0, 2 * i + 1, 2 * j], x[0, 2 * i + 1, 2 * j + 1]])
            assert torch.equal(y[0, i, j], expected)
    assert torch.equal(pixel_shuffle(x, 0.5, "v1"), y.transpose(1, 2))


def test_grounding_tokens_registered_once_with_mean_rows(make_mllm, tiny_mllm_path):
    from projects.desa2va.models.checkpoint_io import read_safetensors_folder

    m = make_mllm()
    vocab = m.tokenizer.get_vocab()
    assert all(t in vocab for t in st.GROUNDING_TOKENS)
    assert len(set(m.grounding_token_ids)) == 5 and m.seg_token_id == vocab[st.SEG]
    old = read_safetensors_folder(tiny_mllm_path)["language_model.model.embed_tokens.weight"]
    emb = m.get_input_embeddings().weight
    assert emb.shape[0] == old.shape[0] + 5 == len(m.tokenizer)
    assert torch.allclose(emb[m.seg_token_id], old.mean(0), atol=1e-6)
    assert torch.allclose(m.causal_lm.lm_head.weight[m.seg_token_id],
                          read_safetensors_folder(tiny_mllm_path)["language_model.lm_head.weight"].mean(0), atol=1e-6)
    n_tok, rows = len(m.tokenizer), emb.shape[0]
    assert m.add_grounding_tokens() == []  # a second call adds nothing
    assert len(m.tokenizer) == n_tok and m.get_input_embeddings().weight.shape[0] == rows
    ids = m.tokenizer("a [SEG] b <p> x </p>", add_special_tokens=False).input_ids
    assert ids.count(m.seg_token_id) == 1 and vocab[st.PHRASE_START] in ids  # each is one token


def test_image_token_count_mismatch_is_an_error(make_mllm):
    m = make_mllm()
    ids, labels = image_prompt(m, n_tiles=2)
    with pytest.raises(ImageTokenMismatchError, match="32 <IMG_CONTEXT> tokens .* 1 tile"):
        m(ids, labels=labels, pixel_values=torch.randn(1, 3, 128, 128))
    two = torch.cat([ids, ids])
    with pytest.raises(ImageTokenMismatchError, match="sample 1: 32 <IMG_CONTEXT> tokens but 1 tile"):
        m(two, pixel_values=torch.randn(3, 3, 128, 128), num_tiles=[2, 1])
    with pytest.raises(ImageTokenMismatchError):
        m(ids[:, :-3], labels=labels[:, :-3], pixel_values=None)


def test_visual_tokens_are_spliced_in_order(make_mllm):
    m = make_mllm()
    ids, _ = image_prompt(m, n_tiles=2)
    pv = torch.randn(2, 3, 128, 128)
    embeds = m.build_inputs_embeds(ids, pv)
    ctx = ids[0] == m.img_context_token_id
    vis = m.extract_visual_tokens(pv)
    assert vis.shape == (2, m.num_image_token, m.hidden_size) and m.num_image_token == 16
    assert torch.allclose(embeds[0, ctx], vis.reshape(-1, m.hidden_size))
    assert torch.equal(embeds[0, ~ctx], m.get_input_embeddings()(ids)[0, ~ctx])


def test_forward_loss_and_seg_states_match_transformers(make_mllm):
    m = make_mllm()
    a_ids, a_lab = image_prompt(m, answer="Sure, [SEG] and [SEG].")
    b_ids, b_lab = image_prompt(m, answer="It is [SEG]. Done now.")
    pad = b_ids.shape[1] - a_ids.shape[1]
    assert pad > 0
    a_mask = torch.cat([torch.ones_like(a_ids), torch.zeros(1, pad, dtype=torch.long)], 1)
    a_ids = torch.cat([a_ids, torch.full((1, pad), m.tokenizer.pad_token_id)], 1)
    a_lab = torch.cat([a_lab, torch.full((1, pad), -100)], 1)
    ids, labels = torch.cat([a_ids, b_ids]), torch.cat([a_lab, b_lab])
    mask = torch.cat([a_mask, torch.ones_like(b_ids)])
    pv = torch.randn(2, 3, 128, 128)
    out = m(ids, attention_mask=mask, labels=labels, pixel_values=pv, num_tiles=[1, 1], return_hidden_states=True)
    assert out.seg_hidden.shape == (3, m.hidden_size)
    assert out.seg_batch_index.tolist() == [0, 0, 1]
    ref = m.causal_lm(inputs_embeds=m.build_inputs_embeds(ids, pv), attention_mask=mask, labels=labels,
                      output_hidden_states=True)
    seg = ids == m.seg_token_id
    assert torch.allclose(out.seg_hidden, ref.hidden_states[-1][seg], atol=1e-5)  # last layer, after norm
    assert torch.allclose(out.loss, ref.loss, atol=1e-5)


def test_generation_returns_text_and_seg_states_at_input_positions(make_mllm):
    m = make_mllm().eval()
    tok = m.tokenizer
    ids, _ = image_prompt(m, answer="")
    ids = ids[:, :-1]  # drop the answer's <|im_end|>: the prompt ends with "assistant\n"
    pv = torch.randn(1, 3, 128, 128)
    sure, dot = tok("Sure", add_special_tokens=False).input_ids, tok(".", add_special_tokens=False).input_ids
    script = sure + [m.seg_token_id] + dot + [m.seg_token_id] + [tok.convert_tokens_to_ids(st.IM_END)]
    real_head = m.causal_lm.lm_head
    m.causal_lm.lm_head = ScriptedHead(script, len(tok))
    gen = m.generate(ids, pixel_values=pv, max_new_tokens=20)
    m.causal_lm.lm_head = real_head
    assert gen.token_ids == script[:-1]
    assert gen.text == "Sure[SEG].[SEG]"
    assert gen.seg_hidden.shape == (2, m.hidden_size)
    full = torch.cat([ids, torch.tensor([gen.token_ids])], dim=1)
    with torch.no_grad():
        out = m(full, pixel_values=pv)
    assert torch.allclose(gen.seg_hidden, out.seg_hidden, atol=1e-4)


def test_generation_without_seg_and_at_token_limit(make_mllm):
    m = make_mllm().eval()
    ids, _ = image_prompt(m, answer="")
    pv = torch.randn(1, 3, 128, 128)
    m.causal_lm.lm_head = ScriptedHead([5, 6, m.seg_token_id], len(m.tokenizer))
    gen = m.generate(ids[:, :-1], pixel_values=pv, max_new_tokens=2)
    assert gen.token_ids == [5, 6] and gen.seg_hidden.shape == (0, m.hidden_size)
    m.causal_lm.lm_head = ScriptedHead([5, m.seg_token_id], len(m.tokenizer))
    gen = m.generate(ids[:, :-1], pixel_values=pv, max_new_tokens=2)  # last token [SEG]: state still read
    assert gen.token_ids == [5, m.seg_token_id] and gen.seg_hidden.shape == (1, m.hidden_size)


def _backward(m):
    ids, labels = image_prompt(m, answer="Sure, [SEG].")
    m.train()
    out = m(ids, labels=labels, pixel_values=torch.randn(1, 3, 128, 128))
    (out.loss + out.seg_hidden.pow(2).sum()).backward()


def test_lora_trains_only_adapters_grounding_rows_and_projector(make_mllm):
    m = make_mllm(lora=dict(r=4, lora_alpha=8, lora_dropout=0.0), freeze_projector=False)
    with torch.no_grad():  # non-zero lora_B so lora_A receives gradient too
        for n, p in m.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    _backward(m)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    for n, p in m.named_parameters():
        if n not in trainable:
            assert p.grad is None, n
    lora = {n for n in trainable if "lora_" in n}
    assert lora and all(m.get_parameter(n).grad.abs().sum() > 0 for n in lora)
    assert {n for n in trainable if n.startswith("mlp1.")} == {n for n, _ in m.mlp1.named_parameters(prefix="mlp1")}
    assert not any(n.startswith("vision_model.") for n in trainable)
    rows = trainable - lora - {n for n in trainable if n.startswith("mlp1.")}
    assert rows == {"language_model.base_model.model.model.embed_tokens.weight",
                    "language_model.base_model.model.lm_head.weight"}
    others = torch.ones(len(m.tokenizer), dtype=torch.bool)
    others[m.grounding_token_ids] = False
    for n in rows:
        g = m.get_parameter(n).grad
        assert g[others].abs().sum() == 0, n
        assert g[m.seg_token_id].abs().sum() > 0, n
    # and an optimizer step leaves every other row untouched
    before = m.get_input_embeddings().weight.detach().clone()
    torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1.0).step()
    after = m.get_input_embeddings().weight.detach()
    assert torch.equal(before[others], after[others]) and not torch.equal(before[m.seg_token_id], after[m.seg_token_id])


def test_full_embeddings_train_with_lora_as_sa2va(make_mllm):
    """Sa2VA's recipe (train_embeddings='full'): LoRA plus every row of the input embeddings and LM head."""
    m = make_mllm(lora=dict(r=4, lora_alpha=8, lora_dropout=0.0), train_embeddings="full")
    _backward(m)
    others = torch.ones(len(m.tokenizer), dtype=torch.bool)
    others[m.grounding_token_ids] = False
    for emb in (m.get_input_embeddings(), m.causal_lm.get_output_embeddings()):
        assert emb.weight.requires_grad and emb.weight.grad[others].abs().sum() > 0
    assert not any(p.requires_grad for n, p in m.named_parameters() if ".layers." in n and "lora_" not in n)
    frozen = make_mllm(lora=dict(r=4, lora_alpha=8, lora_dropout=0.0), train_embeddings="none")
    assert not frozen.get_input_embeddings().weight.requires_grad
    with pytest.raises(ValueError, match="train_embeddings must be one of"):
        make_mllm(train_embeddings="rows")


def test_freeze_switches(make_mllm):
    m = make_mllm(freeze_vision=False, freeze_projector=True)
    _backward(m)
    assert all(p.grad is not None for p in m.vision_model.parameters())
    assert all(p.grad is None and not p.requires_grad for p in m.mlp1.parameters())
    with pytest.raises(ValueError, match="LoRA"):
        make_mllm(lora=dict(r=4), freeze_llm=False)


def test_gradient_checkpointing_gives_the_same_gradients(make_mllm):
    grads = []
    for gc in (False, True):
        m = make_mllm(freeze_vision=False, freeze_llm=False, gradient_checkpointing=gc)
        _backward(m)
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
