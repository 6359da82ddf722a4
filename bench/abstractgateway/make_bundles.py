"""Writes AbstractGateway bundles equivalent to Switchboard's `echo` and `ask` flows.

A bundle is a zip with `manifest.json` and one VisualFlow JSON per flow:
  echo: on_flow_start -> on_flow_end
  ask:  on_flow_start -> ask_user -> on_flow_end
Usage: python make_bundles.py OUT_DIR
"""

import json
import sys
import zipfile
from pathlib import Path


def node(node_id, kind, inputs=(), outputs=(), **extra):
    data = {"nodeType": kind, "label": node_id, "inputs": list(inputs), "outputs": list(outputs)}
    data.update(extra)
    return {"id": node_id, "type": kind, "position": {"x": 0.0, "y": 0.0}, "data": data}


EXEC_IN = {"id": "exec-in", "label": "", "type": "execution"}
EXEC_OUT = {"id": "exec-out", "label": "", "type": "execution"}


def edge(src, dst):
    return {
        "id": f"e-{src}-{dst}",
        "source": src,
        "sourceHandle": "exec-out",
        "target": dst,
        "targetHandle": "exec-in",
    }


def flow(flow_id, middle):
    start = node("start", "on_flow_start", outputs=[EXEC_OUT])
    end = node("end", "on_flow_end", inputs=[EXEC_IN])
    nodes = [start, *middle, end]
    chain = [n["id"] for n in nodes]
    edges = [edge(a, b) for a, b in zip(chain, chain[1:])]
    return {"id": flow_id, "name": flow_id, "nodes": nodes, "edges": edges, "entryNode": "start"}


def ask_node():
    return node(
        "ask",
        "ask_user",
        inputs=[EXEC_IN, {"id": "prompt", "label": "prompt", "type": "string"}],
        outputs=[EXEC_OUT, {"id": "response", "label": "response", "type": "string"}],
        pinDefaults={"prompt": "Approve?"},
        effectConfig={"allowFreeText": True},
    )


def bundle(out: Path, bundle_id: str, vf: dict):
    manifest = {
        "bundle_format_version": "1",
        "bundle_id": bundle_id,
        "bundle_version": "1.0.0",
        "entrypoints": [{"flow_id": vf["id"], "name": bundle_id, "description": "", "interfaces": []}],
        "default_entrypoint": vf["id"],
        "flows": {vf["id"]: f"flows/{vf['id']}.json"},
        "artifacts": {},
        "assets": {},
        "metadata": {},
    }
    path = out / f"{bundle_id}@1.0.0.flow"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1))
        z.writestr(f"flows/{vf['id']}.json", json.dumps(vf, indent=1))
    print(path)


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    bundle(out, "echo", flow("echo", []))
    bundle(out, "ask", flow("ask", [ask_node()]))


if __name__ == "__main__":
    main()
