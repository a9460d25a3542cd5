// Package syncbuf provides Buffer, a locked writer whose contents String
// returns, safe for concurrent writers and readers: the place a child
// process's stdout and stderr go while the parent watches them. With Max
// set, once it holds Max bytes later writes are dropped (reported written).
package syncbuf
