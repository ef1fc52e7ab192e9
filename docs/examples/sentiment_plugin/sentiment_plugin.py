"""A node type from outside the service: scores a text's sentiment by counting positive and negative words."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import NodeExecutionError
from engine.records import LogLevel
from nodes.base import NodeContext, NodeResult, NodeType

WORD = re.compile(r"[a-z']+")


class SentimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The text to score, usually a template such as {{input.review}}.")
    positive: list[str] = Field(
        default=["good", "great", "love", "excellent", "fast"], description="Words that count +1."
    )
    negative: list[str] = Field(
        default=["bad", "poor", "hate", "broken", "slow"], description="Words that count -1."
    )


class SentimentNode(NodeType[SentimentConfig]):
    type_name = "sentiment"
    description = "Scores a text from -1 (negative) to 1 (positive) by counting listed words."
    config_model = SentimentConfig

    async def execute(self, config: SentimentConfig, ctx: NodeContext) -> NodeResult:
        words = WORD.findall(config.text.lower())
        if not words:
            raise NodeExecutionError(f"node '{ctx.node_id}': the text has no words to score")
        positive = sum(word in config.positive for word in words)
        negative = sum(word in config.negative for word in words)
        counted = positive + negative
        score = round((positive - negative) / counted, 2) if counted else 0.0
        label = "positive" if score > 0 else "negative" if score < 0 else "neutral"
        ctx.log(LogLevel.INFO, f"{len(words)} words, {positive} positive, {negative} negative", {})
        return NodeResult(output={"score": score, "label": label, "words": len(words)})
