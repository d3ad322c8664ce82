"""Run by tests/test_multinode.py in its own process: two nodes on this machine, the head and a worker
(``ray.cluster_utils.Cluster``); a custom resource ``accel`` stands in for one GPU per node.

Usage: python tests/multinode.py BUCKET_URL  (the S3 endpoint and credentials come from the environment)
"""

import hashlib
import json
import os
import sys
import tempfile

import fsspec
import ray
from ray.cluster_utils import Cluster
from ray.util.state import list_actors

from deblur.core.config import PipelineConfig, TrainConfig
from deblur.core.image import encode
from deblur.pipeline.run import run
from deblur.train.trainer import fit
from tests.conftest import _free_port, textured
from tests.core.test_catalog import Served
from tests.core.test_foreign import nafnet, random_weights, save


def nodes_of(class_fragment: str) -> set[str]:
    address = ray.get_runtime_context().gcs_address  # this cluster's, whatever else runs on the machine
    return {a.node_id for a in list_actors(address=address, filters=[("state", "!=", "PENDING_CREATION")],
                                           limit=10_000, detail=True) if class_fragment in a.class_name}


def serve_a_model() -> tuple[Served, list[str]]:
    """A public model entry served on loopback (this process's cache, and an empty one for each worker node)."""
    folder = tempfile.mkdtemp()
    weights = open(save(random_weights(nafnet), os.path.join(folder, "nafnet"), "params"), "rb").read()
    served = Served({"/nafnet.pth": weights})
    with open(os.path.join(folder, "models.json"), "w") as f:
        json.dump([{"name": "tiny-nafnet", "urls": [f"{served.url}/nafnet.pth"], "licence": "MIT",
                    "sha256": hashlib.sha256(weights).hexdigest()}], f)
    os.environ.update(DEBLUR_MODELS=os.path.join(folder, "models.json"), DEBLUR_CACHE=os.path.join(folder, "driver"))
    return served, [os.path.join(folder, f"node{i}") for i in range(2)]


def main(bucket: str) -> None:
    fs = fsspec.filesystem("s3")
    for i in range(8):
        fs.pipe(f"{bucket[5:]}/mn/sharp/s{i}.png", encode(textured(40, 40, 3, seed=i), "png"))
    served, caches = serve_a_model()
    node = {"num_cpus": 2, "resources": {"accel": 1}}
    cluster = Cluster(initialize_head=True, head_node_args={  # a node that works, as a small cluster's head does
        **node, "env_vars": {"DEBLUR_CACHE": caches[0]}, "include_dashboard": True, "dashboard_port": _free_port()})
    workers = [cluster.head_node, cluster.add_node(**node, env_vars={"DEBLUR_CACHE": caches[1]})]
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    best = fit(TrainConfig(data=f"{bucket}/mn/sharp", val_data=f"{bucket}/mn/sharp", output=f"{bucket}/mn/run",
                           degradation="gaussian:sigma=1.0", epochs=1, batch_size=8, patch_size=32, workers=2,
                           worker_resources={"accel": 1}))
    assert best.startswith(f"{bucket}/mn/run/epoch_"), best
    worker_nodes = {w.node_id for w in workers}
    train_nodes = nodes_of("RayTrainWorker")
    assert train_nodes == worker_nodes, (train_nodes, worker_nodes)
    s = run(PipelineConfig(input=f"{bucket}/mn/sharp", output=f"{bucket}/mn/named", model="tiny-nafnet", workers=2,
                           batch_size=1, actor_resources={"accel": 1}))
    assert (s.done, s.failed) == (8, 0), s.line()
    actor_nodes = nodes_of("MapWorker")
    assert actor_nodes == worker_nodes, (actor_nodes, worker_nodes)
    assert served.requests == ["/nafnet.pth"], served.requests  # one download: the driver's, shipped to the nodes
    assert all(os.listdir(os.path.join(c, "models")) for c in caches)  # each node's cache got it from the store
    print(f"OK training workers on {len(train_nodes)} nodes, model actors on {len(actor_nodes)} nodes, one "
          f"download; {best}")
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
