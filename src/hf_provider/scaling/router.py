"""The deployment's Ray Serve request router: Ray's power-of-two-choices router with its multiplexed model rule,
plus one change, that a hot model spreads to more replicas before its replicas are full (scaling/spread.py).

Built on Ray's public request-router API (`ray.serve.request_router`). Ray pickles this module by
value into its proxies and handles (RequestRouterConfig); what it imports of ours (spread.py) is imported
there, so the proxies' environment needs hf-provider installed, as the replicas' does.
"""

from __future__ import annotations

import random

from ray.serve.request_router import (
    FIFOMixin,
    LocalityMixin,
    MultiplexMixin,
    PendingRequest,
    RequestRouter,
    RunningReplica,
)

from hf_provider.scaling.lost_replica import install_in_proxy
from hf_provider.scaling.spread import ReplicaLoad, spread


class HotModelRouter(FIFOMixin, LocalityMixin, MultiplexMixin, RequestRouter):
    def initialize_state(self, **kwargs: object) -> None:
        # built inside Ray's proxies: a lost replica's requests there end in 503 + Retry-After, not 500
        install_in_proxy()
        super().initialize_state(**kwargs)

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        model = pending_request.metadata.multiplexed_model_id if pending_request is not None else ""
        if model:
            # Ray's rule first (holders of the model; after a refusal or a timeout, the replicas with fewest
            # models, then all), then ours on top of it
            ids = self.apply_multiplex_routing(pending_request=pending_request)
            loads = {
                r.replica_id: ReplicaLoad.of(r.multiplexed_model_ids, r.routing_stats)
                for r in candidate_replicas
            }
            ids = spread(model, ids, loads)
        else:
            ids = self.apply_locality_routing(pending_request=pending_request)
        replicas = self.curr_replicas
        chosen = [i for i in ids if i in replicas]
        if not chosen:
            return []
        # power of two choices: two at random; Ray probes their queue lengths and takes the shorter that accepts
        return [[replicas[i] for i in random.sample(chosen, min(2, len(chosen)))]]
