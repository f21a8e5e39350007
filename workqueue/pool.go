package workqueue

import "github.com/prometheus/client_golang/prometheus"
import "go.uber.org/zap"

type PoolOption interface{ applyPool(*poolConfig) }
type poolConfig struct {
	logger *zap.Logger
	reg    prometheus.Registerer
}
