// Package archtest holds the tests that keep Regie's layering honest (see
// the design notes): which packages may import storage, server, auth, Fiber
// and the MongoDB driver, and that every package documents itself.
package archtest
