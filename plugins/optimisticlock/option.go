package optimisticlock

// FieldNameDefault is the struct field that holds the version unless
// WithFieldName says otherwise.
const FieldNameDefault = "Version"

// Option configures the plugin.
type Option func(*plugin)

// WithFieldName makes the plugin look for the version in the named struct field
// (default FieldNameDefault). The field must be of an integer type.
func WithFieldName(name string) Option {
	return func(p *plugin) { p.fieldName = name }
}
