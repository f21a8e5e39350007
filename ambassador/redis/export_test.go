package redis

// Arities maps the name of every command the proxy forwards or answers to the fewest arguments,
// the command included, it takes.
func Arities() map[string]int {
	m := make(map[string]int, len(commands))
	for name, info := range commands {
		m[name] = int(info.arity)
	}
	return m
}
