package ambassador

import (
	"errors"
	"fmt"
)

var (
	// ErrNoEndpoint is returned when no endpoint can take a request or connection.
	ErrNoEndpoint = errors.New("ambassador: no endpoint available")
	// ErrOverloaded is returned when circuit breaking rejects a request (max pending reached).
	ErrOverloaded = errors.New("ambassador: endpoint overloaded")
	// ErrRunning is returned by Run when the component is already running.
	ErrRunning = errors.New("ambassador: already running")
)

// ConfigError is a bad option or endpoint; Field names what is wrong.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("ambassador: config %s: %s", e.Field, e.Reason)
}
