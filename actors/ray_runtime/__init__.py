"""The Ray side: the job manager and its job actors, the executor actors and CPU tasks, the cluster-wide LLM
limiter, start-up, and `ray_api`, the one module that calls into Ray."""
