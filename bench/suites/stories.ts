/**
 * Shared workload for the KV-compression benchmarks: children's-story text
 * (the register stories260K was trained on) cut into prompts of given token
 * lengths, each starting at a different sentence so no two share a prefix.
 */
import type { Engine } from '../../src/engine/engine.ts';

export const STORIES = [
  `Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her red ball. One day, she saw a big dog under a tree. The dog was sad because he was lost. Lily wanted to help him find his home. She walked with the dog down the street and asked everyone she met if they knew him. An old man said, "I know that dog! He lives by the blue house near the pond." Lily was very happy. She took the dog to the blue house and knocked on the door. A boy opened the door and smiled. "Max! You came back!" he said. The boy hugged his dog and thanked Lily. From that day on, Lily and the boy were best friends, and they played with Max in the park every day.`,
  `Tom was a small bird who lived in a tall tree. He liked to sing songs in the morning when the sun came up. One day, a strong wind came and shook the tree. Tom was scared and flew down to the ground. There he met a kind frog named Ben. Ben said, "Do not be afraid, Tom. The wind will stop soon." They sat together by the pond and watched the leaves fly. When the wind stopped, Tom flew back to his tree and sang a new song about his friend Ben. Every morning after that, Ben came to the tree to listen, and Tom sang louder than ever before.`,
  `Sue had a little boat that she liked to push in the bath. Her mom told her that boats can go very far on the sea. Sue wanted to see the sea, so her dad took her to the beach. The water was big and blue, and the sand was warm. Sue put her boat in the water and watched it float. A small wave came and took the boat away. Sue was sad, but then a nice girl swam out and brought it back. Sue said thank you and shared her apple with the girl. They built a big sand castle together until the sun went down, and then they went home happy.`,
  `Once upon a time, there was a boy named Tim. Tim had a big red truck that he loved very much. Every day he played with his truck in the yard. One day, Tim's truck broke. The wheel came off and Tim was very sad. He went to his mom and said, "Mom, my truck is broken. Can you fix it?" His mom looked at the truck and smiled. "We can fix it together," she said. They found some glue and a little stick. Mom held the wheel and Tim put the glue on it. They waited and waited. Then the wheel was strong again. Tim was so happy that he gave his mom a big hug.`,
  `Once upon a time, in a small house, there lived a cat named Mittens. Mittens liked to sleep in the warm sun by the window. One day, a little mouse came into the house. The mouse was hungry and looked for some food. Mittens opened one eye and saw the mouse. She did not want to chase it. She said, "Hello, little mouse. Why are you here?" The mouse said, "I am hungry and I have no food." Mittens felt sorry for the mouse. She showed him a piece of cheese on the table. The mouse ate the cheese and said thank you. From that day on, the cat and the mouse were good friends.`,
  `Anna and her brother Jack went to the farm with their grandpa. They saw cows, pigs and a big brown horse. Grandpa let them feed the chickens. Anna threw the corn and the chickens ran to eat it. Jack laughed and laughed. Then they went to see the little lambs. One lamb was very small and could not find its mom. Anna picked it up and carried it to the barn. The mom sheep was there and said, "Baa!" The little lamb ran to its mom. Grandpa said, "You are very kind, Anna." Anna felt proud. At the end of the day, they ate warm bread and drank milk before they went to sleep.`,
];

export interface StoryPrompt {
  /** Token ids, BOS first. */
  ids: number[];
  story: number;
}

/** `n` prompts whose lengths cycle through `lengths`; prompt k opens at sentence k of the corpus (wrapping). */
export function storyPrompts(engine: Engine, n: number, lengths: number[]): StoryPrompt[] {
  const sentences = STORIES.flatMap((s, story) => s.split(/(?<=[.!?]"?)\s+/).map((text, i) => ({ text, story, i })));
  // openings: the first sentence of each story first, then later sentences
  const starts = [...sentences.filter((s) => s.i === 0), ...sentences.filter((s) => s.i !== 0 && s.i % 3 === 0)];
  return Array.from({ length: n }, (_, k) => {
    const start = sentences.indexOf(starts[k % starts.length]);
    const target = lengths[k % lengths.length];
    let text = '';
    for (let j = start; engine.encode(text).length < target; j = (j + 1) % sentences.length) text += (text ? ' ' : '') + sentences[j].text;
    return { ids: engine.encode(text).slice(0, target), story: sentences[start].story };
  });
}
