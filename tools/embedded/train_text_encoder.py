#!/usr/bin/env python3
"""Pre-train the CLIP text encoder from scratch with auxiliary attribute heads.

Captions come from the "base" generator (seeds 0..N-1, 4 caption variants for single
objects); labels are the attributes each caption states (free labels from the generator).
This gives the UNet informative text features from its first step (the probe showed that
a text encoder trained jointly from scratch is ignored by the UNet).

  python tools/embedded/train_text_encoder.py --out /work/train/te --steps 1500
"""
import argparse
import os
import time

import torch

from common import TEXT_CONFIG, load_ckpt, log, lr_factor, rng_state, save_ckpt, seed_all, set_rng_state, setup_threads
from encode_latents import captions_for, tokenize
from text_aux import AuxHeads
import shapes_data as sd


def heldout_captions():
    caps, labs = [], []
    for (shape, fg, bg) in sd.HOLDOUT:
        for size in sd.SIZE_NAMES:
            for pos in sd.POS_NAMES:
                o = dict(shape=shape, color=fg, size=size, pos=pos)
                caps.append(sd.caption_single(None, o, bg, canonical=True)[0])
                labs.append([sd.COLOR_NAMES.index(bg), sd.COLOR_NAMES.index(fg), sd.ALL_SHAPES.index(shape),
                             sd.SIZE_NAMES.index(size), sd.POS_NAMES.index(pos), 0, -1, -1, -1])
    return caps, torch.tensor(labs)


def build(seeds):
    caps, labs = [], []
    for s in seeds:
        c, l, _ = captions_for(s, "base")
        caps += c
        labs += l
    return tokenize(caps), torch.tensor(labs)


@torch.no_grad()
def evaluate(te, heads, ids, labels):
    te.eval()
    accs = {}
    for k in range(0, len(ids), 512):
        o = te(ids[k:k + 512].long())
        _, a = heads.loss(o.last_hidden_state, o.pooler_output, labels[k:k + 512])
        for n, v in a.items():
            accs.setdefault(n, []).append(v)
    te.train()
    return {n: round(sum(v) / len(v), 3) for n, v in accs.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/train/te")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--bs", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n-seeds", type=int, default=50000)
    ap.add_argument("--stop-at", type=int, default=0, help="stop (and save) at this step; the schedule still follows --steps")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    setup_threads(2)
    os.makedirs(args.out, exist_ok=True)
    seed_all(args.seed)
    from transformers import CLIPTextConfig, CLIPTextModel
    te = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    heads = AuxHeads(TEXT_CONFIG["hidden_size"])
    params = list(te.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    t0 = time.time()
    ids, labels = build(range(args.n_seeds))
    vids, vlabels = build(range(9_000_000, 9_002_000))
    hids, hlabels = heldout_captions()
    hids = tokenize(hids)
    log(f"captions {len(ids)} built in {time.time() - t0:.0f}s; TE params {sum(p.numel() for p in te.parameters())}")
    step = 0
    ck = load_ckpt(os.path.join(args.out, "ckpt.pt"))
    if ck:
        te.load_state_dict(ck["te"])
        heads.load_state_dict(ck["heads"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        set_rng_state(ck["rng"])
        log("resumed at", step)
    g = torch.Generator().manual_seed(1234 + step)
    t0 = time.time()
    end = min(args.steps, args.stop_at) if args.stop_at else args.steps
    while step < end:
        for pg in opt.param_groups:
            pg["lr"] = args.lr * lr_factor(step, 100, args.steps, const_frac=0.7, floor=0.1)
        idx = torch.randint(0, len(ids), (args.bs,), generator=g)
        o = te(ids[idx].long())
        loss, accs = heads.loss(o.last_hidden_state, o.pooler_output, labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 100 == 0:
            log(f"step {step} loss {loss.item():.4f} {(time.time() - t0) / 100:.2f}s/step train-acc {accs}")
            t0 = time.time()
        if step % 250 == 0 or step == end:
            save_ckpt(os.path.join(args.out, "ckpt.pt"), dict(te=te.state_dict(), heads=heads.state_dict(),
                                                             opt=opt.state_dict(), step=step, rng=rng_state(),
                                                             args=vars(args)))
    log("val acc (unseen seeds)", evaluate(te, heads, vids, vlabels))
    log("held-out-triple captions acc", evaluate(te, heads, hids, hlabels))


if __name__ == "__main__":
    main()
