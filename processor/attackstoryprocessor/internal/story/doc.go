// Package story holds the stories of the attack-story processor: the buffer that groups spans
// by trace into stories (completion, stitching, bounds, time order), and the facts the rules,
// the profiles and the findings read from a story, extracted once. It also names the attributes
// and rule ids the other packages share.
package story
